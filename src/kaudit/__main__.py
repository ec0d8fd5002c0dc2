from kaudit.cli import main

main(prog_name="kaudit")
