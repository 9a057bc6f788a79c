from redisops.cli.app import main

main()
