#!/usr/bin/env python3
"""Reference exit schedules from torchtune's own code, for sortedtrain's sorted.scale and
sorted.curriculum (Tests/Fixtures/exit-schedules.json; the Swift test needs no Python).

    python3 scripts/make_schedule_fixture.py --out Tests/Fixtures/exit-schedules.json

Needs: pip install torch torchtune. torchtune's package __init__ insists on torchao, which
may not match the installed torch; the module that defines the loss scales and curricula
(torchtune/modules/early_exit_loss.py) needs none of it, so it is executed on its own with
stand-ins for the two names it imports (a logger and the TransformerDecoder type hint).

For exits at layer ids 1, 3, 5, 7 of 8 (depths 2, 4, 6, 8) and max_steps 100, it records,
for each curriculum (none, rotational, gradual) and the steps below, the depths torchtune's
recipe trains (its get-then-step order: the mask is read before a step and advanced after
it) and, for each scale, the weights torchtune's loss-scale function gives those depths.
"""
import argparse
import importlib.util
import json
import logging
import os
import sys
import types

import numpy as np
import torch

LAYERS = 8
EXIT_LAYER_IDS = [1, 3, 5, 7]
MAX_STEPS = 100
STEPS = [0, 1, 2, 3, 7, 19, 20, 21, 32, 33, 44, 45, 46, 60, 99]


def load_early_exit_module():
    spec = importlib.util.find_spec("torchtune")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_schedule_fixture: torchtune is not installed (pip install torchtune)")
    path = os.path.join(spec.submodule_search_locations[0], "modules", "early_exit_loss.py")
    utils = types.ModuleType("torchtune.utils")
    utils.get_logger = lambda level="INFO": logging.getLogger("torchtune")
    transformer = types.ModuleType("torchtune.modules.transformer")
    transformer.TransformerDecoder = object
    package = types.ModuleType("torchtune")
    package.utils = utils
    modules = types.ModuleType("torchtune.modules")
    modules.transformer = transformer
    sys.modules.update({"torchtune": package, "torchtune.utils": utils, "torchtune.modules": modules,
                        "torchtune.modules.transformer": transformer})
    source = open(path).read()
    module = types.ModuleType("torchtune_early_exit_loss")
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/exit-schedules.json")
    args = ap.parse_args()
    tt = load_early_exit_module()
    scales = {"uniform": tt.uniform_loss_scale, "linear": tt.linear_l_loss_scale, "sum": tt.sum_l_loss_scale,
              "sqrt": tt.sqrt_l_loss_scale, "inverse": tt.inv_l_loss_scale, "inverse_sqrt": tt.inv_sqrt_l_loss_scale}
    mask = [i in EXIT_LAYER_IDS for i in range(LAYERS)]
    curricula = {"none": None,
                 "rotational": tt.RotationalEarlyExitCurriculum(list(mask), max_steps=MAX_STEPS),
                 "gradual": tt.GradualEarlyExitCurriculum(list(mask), max_steps=MAX_STEPS)}
    cases = []
    for name, curriculum in curricula.items():
        for step in range(max(STEPS) + 1):
            active = np.array(mask) if curriculum is None else curriculum.get()
            if curriculum is None:
                active[-1] = True
            if step in STEPS:
                ids = [i for i in range(LAYERS) if active[i]]
                weights = {s: [float(w) for w in fn(torch.tensor(ids, dtype=torch.float64), LAYERS, 1.0)]
                           for s, fn in scales.items()}
                cases.append({"curriculum": name, "step": step, "depths": [i + 1 for i in ids], "weights": weights})
            if curriculum is not None:
                curriculum.step()
    fixture = {"layers": LAYERS, "exits": [i + 1 for i in EXIT_LAYER_IDS], "max_steps": MAX_STEPS,
               "source": "torchtune/modules/early_exit_loss.py", "cases": cases}
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.out}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
