"""Maze2D planning (paper Table 1): guided Diffusion Forcing plans executed by receding-horizon control.

* :mod:`.planner` — :class:`Planner`, the methods of Table 1, the goal cost, PD tracking;
* :mod:`.train` — training a planner on windows of the regenerated D4RL walk;
* :mod:`.evaluate` — ``dforce eval planning``: episodes, D4RL normalized score, pictures;
* :mod:`.data` — ``dforce data maze2d``: regenerate/check the offline dataset;
* :mod:`.farama` — Farama's gymnasium-robotics PointMaze seen in D4RL's frame (:func:`~.farama.make_pointmaze`);
* :mod:`.table` — the Table 1 rows of the docs, read from ``results/planning``.

The Maze2D environment (:mod:`dforce.envs.maze2d`), its dataset generator
(:mod:`dforce.data.maze2d`) and the frame-stacked token layout (:mod:`dforce.data.maze2d_tokens`)
stay in the shared layers: the imitation domain runs on the same mazes and tokens.
"""

from .planner import METHODS, Plan, Planner, goal_cost, pd_action

__all__ = ["METHODS", "Plan", "Planner", "goal_cost", "pd_action"]
