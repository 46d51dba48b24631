from pkspy.cli import main

main(prog_name="pkspy")
