from fer_cache.cli import main

main()
