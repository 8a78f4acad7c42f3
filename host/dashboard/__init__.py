"""The Textual dashboard: live plots, state, stop log and controls for one controller (or a replay).

`cementguard dashboard --port URL`, `cementguard demo`, `cementguard replay REC` (host.dashboard.cli).
The pieces: `model` (what is shown), `source` (where it comes from: live, replay, a test's script),
`history` (ring buffers + downsampling), `app` (the screen and its keys), `widgets/`.
"""
