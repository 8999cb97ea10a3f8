"""When an unready gateway moves its clients (pure logic, fake clock)."""

from __future__ import annotations

from gateway.readiness import UnreadySpell


def test_clients_move_only_after_one_spell_passes_the_limit() -> None:
    now = [100.0]
    spell = UnreadySpell(close_after=10.0, clock=lambda: now[0])
    assert not spell.due(None)
    assert not spell.due("redis subscription deaf")
    now[0] = 109.0
    assert not spell.due("redis subscription deaf")
    assert spell.unready_for == 9.0
    now[0] = 110.5
    assert spell.due("redis subscription down"), "the reason may change within one spell"
    assert spell.due("redis subscription down"), "still due: late arrivals are moved too"


def test_a_ready_moment_ends_the_spell() -> None:
    now = [0.0]
    spell = UnreadySpell(close_after=10.0, clock=lambda: now[0])
    spell.due("deaf")
    now[0] = 8.0
    assert not spell.due(None)
    assert spell.unready_for == 0.0
    now[0] = 12.0
    assert not spell.due("deaf"), "a new spell counts from its own start"
    now[0] = 22.5
    assert spell.due("deaf")
