from asttag.cli import main

main()
