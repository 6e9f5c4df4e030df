"""The heater safety rule, checked under generated interleavings.

world.py    the simulator (the real device), real Klipper with the module,
            the events, and the oracle that checks the rule
            against the device's real state after every event
machine.py  the hypothesis state machine that draws event sequences
replay.py   replays a recorded event script (what a failure prints)
runner.py   main(n_examples): the long run behind `./build.sh bench --safety`
"""
