"""The unit tests' fake and the real client have one interface, so neither can drift: a
method the features call exists on both with the same signature, and the fake's extra
public names are only its declared test helpers."""

from __future__ import annotations

import inspect

import pytest

from cellship.kube.api import KubeAPI
from cellship.kube.client import KubeClient
from tests.unit.kube_fake import HELPERS, FakeKube, FakeKubeWithJobs


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and callable(member)}


def test_the_interface_is_abstract_and_the_real_client_implements_all_of_it() -> None:
    assert KubeAPI.__abstractmethods__  # a fake missing one could not even be made
    assert not KubeClient.__abstractmethods__
    assert public_methods(KubeClient) == public_methods(KubeAPI)


@pytest.mark.parametrize("fake", [FakeKube, FakeKubeWithJobs])
def test_the_fake_has_the_clients_methods_with_the_same_signatures(fake: type) -> None:
    real, faked = public_methods(KubeClient), public_methods(fake)
    assert not fake.__abstractmethods__
    for name, signature in real.items():
        assert name in faked, f"the fake lacks {name}{signature}"
        assert faked[name] == signature, f"{name}: fake {faked[name]} != client {signature}"
    extra = set(faked) - set(real)
    assert extra <= HELPERS, f"public fake methods that are no client methods: {extra - HELPERS}"
