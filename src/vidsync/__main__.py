from vidsync.cli import main

main()
