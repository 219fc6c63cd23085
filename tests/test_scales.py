"""The `small` scale is exactly methods/small_scale.yaml on top of the paper settings, for every method and stage."""

import dataclasses

import pytest

from methods import get_method, method_names
from methods.base import _small_scale_file, small_scale
from tasks import get_suite


def test_every_block_names_a_registered_method_and_only_its_fields():
    names = set(method_names(include_stages=True))
    for method, block in _small_scale_file().items():
        assert method in names, f"small_scale.yaml block {method!r} is not a registered method or stage"
        fields = set(get_method(method).field_names())
        assert set(block) <= fields, (method, set(block) - fields)


@pytest.mark.parametrize("suite_name", ["maze-tiny", "kitchen"])
def test_small_configs_are_the_yaml_values_over_the_paper_ones(suite_name):
    suite = get_suite(suite_name)
    for method in method_names(include_stages=True):
        spec = get_method(method)
        small = spec.resolve_config("small", suite)
        paper = dataclasses.asdict(spec.resolve_config("paper", suite))
        block = small_scale(method)
        assert block, f"{method} has no small-scale block"
        for field, value in dataclasses.asdict(small).items():
            expected = block.get(field, paper[field])
            assert value == pytest.approx(expected), (method, field, value, expected)
