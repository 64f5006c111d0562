"""`codecdash demo`: the dashboard with a live, realistic workload written through the real API.

- :mod:`codecdash.demo.campaign` — the deterministic model of a research campaign: experiments,
  their rate-distortion results (the published UVG 1080p curves, improving over time), costs;
- :mod:`codecdash.demo.fleet` — the orchestrator and the workers, their instance prices and the
  heartbeats they send;
- :mod:`codecdash.demo.workload` — the clock, the history back-fill and the live loop, all through
  :class:`codecdash.Client`;
- :mod:`codecdash.demo.command` — the `codecdash demo` command.

See docs/demo.md.
"""
