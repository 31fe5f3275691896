"""The pieces of tools/official_golden.py (its entry point): `harness` (stubs, the official modules from a
checkout, the fixture format) and one module per fixture family: `solver` (schedules, unipc), `sampling`,
`tiny_runs`, `vae_text` (vae, text_norm) and `media`."""
