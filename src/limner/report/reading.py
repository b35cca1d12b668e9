"""Plain-language readings of an explanation's faithfulness numbers.

A deletion AUC on its own says little; beside the same curve's AUC along random region orders
(its reference) it says whether the ranking beats chance. The reference is a mean over 8 random
orders, whose spread across seeds (one standard deviation) was a tenth to a fifth of its value on
photos, so a difference counts as clear from a fifth of the reference on (and at least 0.02),
and as large from two fifths (and at least 0.05); smaller ones are read as no clear difference.
"""

from __future__ import annotations

#: Differences from the reference that count as clear and as large: a share of the reference,
#: and an absolute floor (for classes whose probability is small everywhere).
CLEAR = (0.2, 0.02)
LARGE = (0.4, 0.05)


def _beyond(gain: float, reference: float, bound: tuple[float, float]) -> bool:
    share, floor = bound
    return gain >= max(share * reference, floor)


def _against_chance(gain: float, reference: float, better: str, same: str, worse: str) -> str:
    if _beyond(gain, reference, LARGE):
        return f"{better} much faster than chance"
    if _beyond(gain, reference, CLEAR):
        return f"{better} faster than chance"
    if _beyond(-gain, reference, CLEAR):
        return f"{worse}: on this image the ranking does worse than chance"
    return f"{same}: on this image the ranking is not clearly better than chance"


def _relative(value: float, reference: float) -> str:
    if reference <= 0:
        return ""
    change = (value - reference) / reference
    return f" ({abs(change):.0%} {'more' if change >= 0 else 'less'})"


def deletion_reading(value: float, reference: float | None) -> str:
    """One sentence: the deletion AUC beside its random-order reference, and what that means."""
    if reference is None:
        return (
            f"Deletion AUC {value:.2f} (lower is better); this RESULT has no random-order "
            "reference to compare it with."
        )
    reading = _against_chance(
        reference - value,
        reference,
        "removing the top regions first drops the class's probability",
        "removing the top regions first drops the class's probability about as fast as "
        "removing regions at random",
        "removing the top regions first drops the class's probability more slowly than "
        "removing regions at random",
    )
    return (
        f"Deletion AUC {value:.2f} vs {reference:.2f} for a random region order"
        f"{_relative(value, reference)}: {reading}."
    )


def insertion_reading(value: float, reference: float | None) -> str:
    """One sentence: the insertion AUC beside its random-order reference, and what that means."""
    if reference is None:
        return (
            f"Insertion AUC {value:.2f} (higher is better); this RESULT has no random-order "
            "reference to compare it with."
        )
    reading = _against_chance(
        value - reference,
        reference,
        "showing the top regions first brings the class's probability back",
        "showing the top regions first brings the class's probability back about as fast as "
        "showing regions at random",
        "showing the top regions first brings the class's probability back more slowly than "
        "showing regions at random",
    )
    return (
        f"Insertion AUC {value:.2f} vs {reference:.2f} for a random region order"
        f"{_relative(value, reference)}: {reading}."
    )


def sets_reading(label: str, is_top: bool, sufficient: list[int], necessary: list[int]) -> str:
    """What the sufficient and necessary sets of a class mean, what an empty one means, and why
    one is empty here."""
    what = (
        f"The sufficient set is the fewest top-ranked regions that, shown alone on the baseline, "
        f"make {label} the top class; the necessary set is the fewest top-ranked regions whose "
        f"removal makes another class the top one. A set is empty when no top-ranked regions do "
        f"that: the sufficient set when the class is not on top even on the whole image; the "
        f"necessary set then too, or when the class stays on top with every region switched off."
    )
    if not is_top:
        return (
            f"{what} Here both are empty: {label} is not the model's top class on the whole "
            f"image, so there is no top place to keep or to lose."
        )
    notes = []
    if not sufficient:
        notes.append("No sufficient set was found along the ranking.")
    if not necessary:
        notes.append(
            f"Here the necessary set is empty: {label} stays the top class even with every "
            f"region switched off to the baseline, so removing regions never changes the top "
            f"class."
        )
    return " ".join([what, *notes])
