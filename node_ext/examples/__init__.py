"""The experiments of the neural ODE literature, runnable with `node-ext train <example>`.

Each example module defines SUMMARY, UNIT ('iteration' or 'epoch') and build(cfg, run), which
returns the tasks to train and a finish(tasks) step that evaluates, plots and returns metrics
(see runner.py)."""
import importlib

EXAMPLES = ("spiral", "odenet", "latent_ode", "anode", "cnf", "nfe")


def load(name):
    """The example module called name."""
    if name not in EXAMPLES:
        raise ValueError("unknown example %r; available: %s" % (name, ", ".join(EXAMPLES)))
    return importlib.import_module("%s.%s" % (__name__, name))
