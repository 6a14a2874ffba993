import pytest
import torch

import node_ext


def _cuda_usable():
    return torch.cuda.is_available() and node_ext.native_available() and node_ext._native.built_with_cuda()


DEVICES = ["cpu"] + (["cuda"] if _cuda_usable() else [])


def pytest_report_header(config):
    return "node_ext native: %s; devices under test: %s" % (node_ext.native_available(), ", ".join(DEVICES))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def native():
    if not node_ext.native_available():
        pytest.fail("node_ext._C is not built: the tests need the native extension")
    return node_ext._native
