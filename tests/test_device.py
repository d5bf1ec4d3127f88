"""Device and precision resolution: one refusal of fp16 off CUDA, "auto" as the default device."""

from __future__ import annotations

import inspect

import pytest
import torch

from asttag import choices, distill, evaluation, hub, inference, tagger
from asttag.device import resolve_device, resolve_precision
from asttag.training import Runtime
from conftest import tiny_model

CPU = torch.device("cpu")


def test_precision_choices():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device; on cpu use bf16 or fp32"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="unknown precision 'int4': use auto, fp32, bf16, fp16"):
        resolve_precision("int4", CPU)


def test_fp16_on_the_cpu_is_refused_in_the_same_words_by_tagging_and_training():
    with pytest.raises(ValueError) as by_training:
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError) as by_tagging:
        tagger.Tagger(tiny_model(), device="cpu", precision="fp16")
    assert str(by_tagging.value) == str(by_training.value)


def test_auto_is_the_default_device_everywhere():
    for function in (hub.load_model, inference.predict_examples, inference.example_logits,
                     evaluation.predict_split, tagger.Tagger, distill.teacher_scores, Runtime):
        assert inspect.signature(function).parameters["device"].default == choices.DEFAULT_DEVICE
    assert choices.DEFAULT_DEVICE == "auto"
    assert resolve_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
