"""``python -m llm_from_scratch.quantize measure --out FILE``: see ``llm_from_scratch.quantize.measure``."""

from llm_from_scratch.quantize.measure import main

raise SystemExit(main())
