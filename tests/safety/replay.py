"""Replay an event script, as a failing example prints it:

    from safety.replay import replay
    replay([
        ('initial', 'off'),
        ('set_target', 45),
        ('fault', 'half_open', True),
        ('press', 'always_on'),
        ('fault', 'half_open', False),
    ])

Raises SafetyViolation (with the script) when the rule breaks."""
from .world import World


def replay(script, firmware="1.0.3", tree="upstream"):
    events = list(script)
    initial = "off"
    if events and events[0][0] == "initial":
        initial = events.pop(0)[1]
    world = World(firmware=firmware, tree=tree)
    try:
        world.start(initial)
        for event in events:
            world.step(*event)
        world.finish()
    finally:
        world.close()
    return world
