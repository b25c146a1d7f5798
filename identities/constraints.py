"""Selectors of the "not this person" constraints (:class:`identities.models.NotSamePerson`).

Three readers respect them: the cast page's grouping (:func:`split`: two traces kept apart are
never in one group), suggestions (:func:`excluded_identities`: a person is not offered for a
trace that is not them) and ``cluster_traces`` (:func:`admissible`: a trace is not bound to a
person it is not, nor clustered with a trace it is kept apart from).

A trace is "not" a person when a constraint names that person, or when it is kept apart from a
trace that is bound to them: pressing × on a face of a group and then naming the group means
the face is not that person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import Q

from identities.models import NotSamePerson
from media_api.models import Trace


def apart_pairs(pks: Iterable[int] | None = None) -> set[tuple[int, int]]:
    """Pairs of traces kept apart, as ``(smaller pk, larger pk)``; only pairs within ``pks`` if given."""
    rows = NotSamePerson.objects.filter(other__isnull=False)
    wanted = None if pks is None else set(pks)
    if wanted is not None and len(wanted) <= 500:  # else: read them all (a small table) and filter here
        rows = rows.filter(Q(trace_id__in=wanted) | Q(other_id__in=wanted))
    pairs = set()
    for a, b in rows.order_by().values_list("trace_id", "other_id"):
        if wanted is None or (a in wanted and b in wanted):
            pairs.add((min(a, b), max(a, b)))
    return pairs


def split(members: Sequence[int], pairs: set[tuple[int, int]]) -> list[list[int]]:
    """``members`` (in order) as few parts as a greedy pass makes, no pair kept apart in one part.

    Each member joins the first part holding none of its partners, so a face taken out of a
    group is alone and the rest stays together; without constraints the group is unchanged.
    """
    partners: dict[int, set[int]] = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    if not any(pk in partners for pk in members):
        return [list(members)]
    parts: list[list[int]] = []
    for pk in members:
        mine = partners.get(pk, set())
        part = next((p for p in parts if mine.isdisjoint(p)), None)
        if part is None:
            parts.append([pk])
        else:
            part.append(pk)
    return parts


def excluded_identities(trace_pks: Iterable[int]) -> dict[int, set[int]]:
    """Per trace, the identity pks it is not: named by a constraint, or bound to a trace kept apart from it."""
    pks = list(dict.fromkeys(trace_pks))
    if not pks:
        return {}
    excluded: dict[int, set[int]] = {}
    partner_of: dict[int, list[int]] = {}
    rows = (NotSamePerson.objects.filter(Q(trace_id__in=pks) | Q(other_id__in=pks)).order_by()
            .values_list("trace_id", "other_id", "identity_id"))
    wanted = set(pks)
    for trace_id, other_id, identity_id in rows:
        if identity_id is not None:
            excluded.setdefault(trace_id, set()).add(identity_id)
            continue
        for mine, theirs in ((trace_id, other_id), (other_id, trace_id)):
            if mine in wanted:
                partner_of.setdefault(theirs, []).append(mine)
    if partner_of:
        bound = Trace.objects.filter(pk__in=list(partner_of), identity__isnull=False).values_list("pk", "identity_id")
        for partner, identity_id in bound:
            for mine in partner_of[partner]:
                excluded.setdefault(mine, set()).add(identity_id)
    return excluded


def excluded_for_group(trace_pks: Iterable[int]) -> set[int]:
    """Identity pks none of these traces may be offered (one group's suggestions)."""
    return set().union(*excluded_identities(trace_pks).values())


def admissible(trace_pks: Sequence[int], identity_pk: int | None = None) -> list[int]:
    """The traces (in order) that may be bound together to ``identity_pk``: clustering's filter.

    A trace that is not that person is left out, and of two traces kept apart the later one.
    """
    excluded = excluded_identities(trace_pks) if identity_pk is not None else {}
    partners: dict[int, set[int]] = {}
    for a, b in apart_pairs(trace_pks):
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    kept: list[int] = []
    taken: set[int] = set()
    for pk in trace_pks:
        if identity_pk in excluded.get(pk, ()) or not partners.get(pk, set()).isdisjoint(taken):
            continue
        kept.append(pk)
        taken.add(pk)
    return kept
