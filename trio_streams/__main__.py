from trio_streams.cli import main

main(prog_name="trio-streams")
