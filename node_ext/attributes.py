"""getattr(obj, name, None) for the optional hooks odeint looks up on func at every solve (step
callbacks, a native form), without the AttributeError that nn.Module.__getattr__ builds for a missing
name: a few microseconds per lookup, which show in the overhead ratio of small solves (W1)."""
import torch


def optional_attribute(obj, name):
    """obj.name, or None when obj has no such attribute."""
    if isinstance(obj, torch.nn.Module) and type(obj).__getattr__ is torch.nn.Module.__getattr__:
        if (name in obj.__dict__ or hasattr(type(obj), name) or name in obj._modules or name in obj._parameters
                or name in obj._buffers):
            return getattr(obj, name, None)
        return None
    return getattr(obj, name, None)
