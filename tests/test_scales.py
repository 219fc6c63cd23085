"""The `small` scale is exactly methods/small_scale.yaml on top of the paper settings, for every method and stage."""

import dataclasses

import pytest

from methods import get_method, method_names
from methods.base import _small_scale_file, small_scale
from tasks import get_suite

DERIVED = {"simpl-meta": {"epochs"}}  # keys that set a field through a formula (documented in the YAML)
DERIVED_FIELDS = {"simpl-meta": {"meta_train_episodes"}}


def test_every_block_names_a_registered_method_and_only_its_fields():
    names = set(method_names(include_stages=True))
    for method, block in _small_scale_file().items():
        assert method in names, f"small_scale.yaml block {method!r} is not a registered method or stage"
        fields = set(get_method(method).field_names()) | DERIVED.get(method, set())
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
            if field in DERIVED_FIELDS.get(method, set()):
                continue
            expected = block.get(field, paper[field])
            assert value == pytest.approx(expected), (method, field, value, expected)


def test_simpl_meta_epochs_set_the_meta_training_length():
    suite = get_suite("maze-tiny")
    cfg = get_method("simpl-meta").resolve_config("small", suite)
    assert cfg.meta_train_episodes == 2 * len(suite.meta_train_tasks) * small_scale("simpl-meta")["epochs"]
