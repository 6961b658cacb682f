"""Write planner defaults chosen on held-apart episodes into a planner checkpoint's ``config.json``.

    python scripts/planner_defaults.py checkpoints/maze2d_umaze --guidance-form ddim --guidance-scale 8 \\
        --rest-weight 0.3 --replan-every 3 --steps 50 --chosen-on results/planning/selection/umaze.json

:class:`dforce.planning.Planner` takes its defaults from the checkpoint (``extra.planning`` and
``sampling.steps``), so ``dforce eval planning`` and ``Planner.from_pretrained`` use what was
chosen without flags. The weights are not touched; ``config.json`` is rewritten atomically and
records which selection record the values came from (``extra.planning.defaults_chosen_on``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dforce import atomic
from dforce.config import PlanningConfig

FIELDS = ("guidance_form", "guidance_scale", "guidance_weighting", "goal_cost", "rest_weight", "guidance_clip",
          "mcg_samples", "replan_every")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    for name in FIELDS:
        kind = type(getattr(PlanningConfig(), name))
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps per token (sampling.steps)")
    parser.add_argument("--chosen-on", required=True, help="the selection record the values come from")
    args = parser.parse_args(argv)
    path = args.checkpoint / "config.json"
    if not path.is_file():
        print(f"error: {str(path)!r} does not exist", file=sys.stderr)
        return 2
    config = json.loads(path.read_text())
    planning = config.get("extra", {}).get("planning")
    if planning is None:
        print(f"error: {str(args.checkpoint)!r} is not a Maze2D planner (no extra.planning)", file=sys.stderr)
        return 2
    planning.update({name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None})
    planning["defaults_chosen_on"] = args.chosen_on
    if args.steps is not None:
        config["sampling"]["steps"] = args.steps
    atomic.write_text(path, json.dumps(config, indent=2) + "\n")
    print(f"{path}: planning {json.dumps({k: planning[k] for k in FIELDS if k in planning})}, "
          f"steps {config['sampling']['steps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
