"""Chapter 7's committed parity figures (book/data/parity/gpt2_transformers.json, written by
``llm-scratch parity``) hold: they show agreement to the rounding of each precision, and a fresh
comparison with Hugging Face's GPT-2 reproduces them."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_from_scratch.parity import HF_CONFIG, gpt2_transformers_parity, read_parity_record

RECORD = Path(__file__).resolve().parent.parent / "book" / "data" / "parity" / "gpt2_transformers.json"
BOUND = {"float32": 1e-5, "float64": 1e-12}   # a few hundred times each precision's rounding unit
FIELDS = ("logits", "loss_diff", "gradient_worst", "gradient_median")


def test_the_committed_figures_show_agreement_to_rounding():
    record = read_parity_record(RECORD)
    assert record["config"] == HF_CONFIG
    for precision, bound in BOUND.items():
        r = record["results"][precision]
        assert r["parameters"] == r["parameters_transformers"]
        worst = max(r[f] for f in FIELDS)
        print(f"{precision}: largest committed difference {worst:.1e} (bound {bound:.0e})")
        assert worst < bound, f"{precision}: committed difference {worst:.1e} above {bound:.0e}: {r}"


@pytest.mark.parity
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_a_fresh_comparison_reproduces_the_committed_figures(torch, transformers, precision):
    committed = read_parity_record(RECORD)["results"][precision]
    fresh = gpt2_transformers_parity(precision)
    assert fresh["parameters"] == committed["parameters"]
    assert fresh["loss"] == pytest.approx(committed["loss"], rel=1e-6 if precision == "float32" else 1e-12)
    for field in FIELDS:
        print(f"{precision} {field}: fresh {fresh[field]:.2e}, committed {committed[field]:.2e}")
        # rounding differences move with the library versions and the machine, not by orders of magnitude
        assert fresh[field] < max(10 * committed[field], BOUND[precision] / 100), (field, fresh[field], committed[field])
