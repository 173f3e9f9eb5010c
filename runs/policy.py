"""The launch policy: may this member launch this model now, and must they confirm first?

``check_launch`` is THE function every launch path calls (single runs, reruns, batches):
per-model policy by role, the team's and the member's monthly budgets, and the team's
confirmation threshold, with one sentence a person can act on. Budgets are checked against
month-to-date spend (each run's reported cost, plus an estimate for runs still in flight
that have no cost yet) in the site's time zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from runs.models import Membership, ModelPolicy, Role
from runs.pricing import format_usd
from runs.usage import month_spend

_ROLE_PHRASE = {
    Role.ADMIN: "team admins",
    Role.MEMBER: "members and admins",
    Role.VIEWER: "everyone in the team",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    needs_confirmation: bool = False
    message: str = ""
    # What the decision was based on, for the launch form to show.
    estimated_cost: Decimal | None = None  # the whole launch (count runs)
    team_spent: Decimal = Decimal(0)
    team_budget: Decimal | None = None
    member_spent: Decimal = Decimal(0)
    member_budget: Decimal | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def blocked(self) -> bool:
        return not self.allowed


def out_of_credit(detail: str | None = None) -> Decision:
    """Runflow's 402, said the same way as our own budget refusals."""
    message = (
        "Runflow refused the launch: the organisation is out of credit. "
        "Top up the balance at Runflow, then launch again."
    )
    return Decision(allowed=False, message=f"{message} ({detail})" if detail else message)


def check_launch(
    membership: Membership,
    model_id: str,
    *,
    estimated_cost: Decimal | None,
    count: int = 1,
) -> Decision:
    """Decide whether ``membership`` may launch ``count`` runs of ``model_id`` now.

    ``estimated_cost`` is the cost of ONE run (``runs.pricing.estimate_cost``), or None when
    the price label cannot be computed: budgets are then only checked against what is
    already spent. Spending up to exactly the budget is allowed; a cent over is not.
    """
    team = membership.team
    total = estimated_cost * count if estimated_cost is not None else None
    refusal = _policy_refusal(membership, model_id)
    if refusal:
        return Decision(allowed=False, message=refusal, estimated_cost=total)

    team_spent = month_spend(team) if team.monthly_budget is not None else Decimal(0)
    member_spent = (
        month_spend(team, user=membership.user)
        if membership.monthly_budget is not None
        else Decimal(0)
    )
    # What the decision is based on, shown by the launch form whatever the outcome.
    base = Decision(
        allowed=True,
        estimated_cost=total,
        team_spent=team_spent,
        team_budget=team.monthly_budget,
        member_spent=member_spent,
        member_budget=membership.monthly_budget,
    )
    problems = [
        problem
        for problem in (
            _over_budget(team_spent, total, team.monthly_budget, "the team", "its"),
            _over_budget(member_spent, total, membership.monthly_budget, "you", "your"),
        )
        if problem
    ]
    if problems:
        return replace(base, allowed=False, message=" ".join(problems))

    notes: tuple[str, ...] = ()
    if total is None:
        notes = ("The cost of this model cannot be estimated from its price label.",)
    threshold = team.confirm_threshold
    if threshold is not None and total is not None and total > threshold:
        what = "This launch is" if count == 1 else f"These {count} runs are"
        message = (
            f"{what} estimated at {format_usd(total)}, above the team's "
            f"{format_usd(threshold)} confirmation threshold. Launch anyway?"
        )
        return replace(base, needs_confirmation=True, message=message, notes=notes)
    return replace(base, message=" ".join(notes), notes=notes)


def _policy_refusal(membership: Membership, model_id: str) -> str | None:
    if not membership.can_launch:
        return "Viewers cannot launch runs: ask a team admin for the member role."
    policy = ModelPolicy.objects.filter(team=membership.team, model_id=model_id).first()
    if policy is None:
        return None
    if not policy.allowed:
        return (
            f"{model_id} is not allowed in {membership.team.name}. "
            "A team admin can change this on the Budgets page."
        )
    if not membership.has_role(policy.min_role):
        who = _ROLE_PHRASE[Role(policy.min_role)]
        return f"In {membership.team.name}, {model_id} can only be launched by {who}."
    return None


# ---- what the pages say before anyone presses Launch ----


@dataclass(frozen=True)
class Restriction:
    """A team policy on a model, as the catalog and the launch form show it."""

    badge: str  # a word or two for a catalog card: "Admins only", "Not allowed"
    message: str  # the sentence for the launch form, written for this person
    blocks: bool  # whether it stops this person from launching


def restrictions(membership: Membership, model_ids: Iterable[str]) -> dict[str, Restriction]:
    """The restrictions of the team's policies on ``model_ids``, in one query.

    Only policies that restrict anything are returned; the launch itself is still decided
    by ``check_launch``, this only says beforehand what it will say.
    """
    policies = ModelPolicy.objects.filter(team=membership.team, model_id__in=list(model_ids))
    found = {}
    for policy in policies:
        restriction = _restriction(membership, policy)
        if restriction is not None:
            found[policy.model_id] = restriction
    return found


def restriction_for(membership: Membership, model_id: str) -> Restriction | None:
    return restrictions(membership, [model_id]).get(model_id)


def _restriction(membership: Membership, policy: ModelPolicy) -> Restriction | None:
    if not policy.allowed:
        who = "You" if membership.is_admin else "A team admin"
        return Restriction(
            "Not allowed",
            f"This model is not allowed in {membership.team.name}. "
            f"{who} can change this on the Budgets page.",
            blocks=True,
        )
    if policy.min_role == Role.ADMIN:
        return Restriction(
            "Admins only",
            "Only team admins can launch this model.",
            blocks=not membership.has_role(Role.ADMIN),
        )
    return None


def _over_budget(
    spent: Decimal, total: Decimal | None, budget: Decimal | None, who: str, whose: str
) -> str | None:
    if budget is None:
        return None
    if total is None:
        # Unknown price: refuse only once the budget is already used up.
        if spent >= budget:
            return (
                f"{who.capitalize()} {'has' if who == 'the team' else 'have'} already used "
                f"{format_usd(spent)} of {whose} {format_usd(budget)} monthly budget."
            )
        return None
    projected = spent + total
    if projected > budget:
        return (
            f"This would take {who} to {format_usd(projected)} of {whose} "
            f"{format_usd(budget)} monthly budget."
        )
    return None
