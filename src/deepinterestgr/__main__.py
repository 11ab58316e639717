from deepinterestgr.cli import main

main()
