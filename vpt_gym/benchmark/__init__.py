"""Benchmark protocol: suites (frozen TOML), the resumable runner, results JSONL, leaderboard and replay.

Submodules: :mod:`~vpt_gym.benchmark.suites`, :mod:`~vpt_gym.benchmark.runner`,
:mod:`~vpt_gym.benchmark.results`, :mod:`~vpt_gym.benchmark.leaderboard`, :mod:`~vpt_gym.benchmark.plots`,
:mod:`~vpt_gym.benchmark.validate`. Nothing heavy is imported here.
"""
