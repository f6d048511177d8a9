from dspx_cli.cli.app import main

main()
