"""`codecdash demo`: the dashboard with a live, realistic workload written through the real API.

- :mod:`codecdash.demo.campaign` — the deterministic model of a research campaign: experiments,
  their outcomes and results (improving over time), costs; with :mod:`codecdash.demo.rd_model`
  (the published UVG 1080p curves), :mod:`codecdash.demo.runs` (one experiment) and
  :mod:`codecdash.demo.failures` (how experiments fail);
- :mod:`codecdash.demo.fleet` — the orchestrator and the workers, their instance prices and the
  heartbeats they send; :mod:`codecdash.demo.serving` — the inference pool's real-time load;
- :mod:`codecdash.demo.workload` — the clock, the history back-fill and the live loop, all through
  :class:`codecdash.Client`;
- :mod:`codecdash.demo.command` — the `codecdash demo` command.

See docs/demo.md.
"""
