"""Launch policy (budgets at the boundary, per-model policy by role, confirmation) and pricing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from runs.models import Membership, ModelPolicy, Role, Run, RunflowModel, Status
from runs.policy import check_launch, out_of_credit
from runs.pricing import Unit, estimate_cost, format_usd, parse_price_label
from runs.usage import month_spend, month_start
from tests.conftest import Cast

pytestmark = pytest.mark.django_db

D = Decimal
API = "https://api.runflow.io"


def spend(cast: Cast, user: object, amount: str, **extra: object) -> Run:
    fields: dict[str, object] = {
        "team": cast.team,
        "created_by": user,
        "api_url": API,
        "model_id": "acme/image",
        "status": Status.SUCCEEDED,
        "cost": D(amount),
    }
    fields.update(extra)
    return Run.objects.create(**fields)


def membership(cast: Cast, who: str) -> Membership:
    return Membership.objects.select_related("team", "user").get(
        team=cast.team, user=getattr(cast, who)
    )


# ---------- Team budget at the boundary ----------


@pytest.fixture
def team_at_49(cast: Cast) -> Cast:
    cast.team.monthly_budget = D("50.00")
    cast.team.save()
    spend(cast, cast.admin, "30.00")
    spend(cast, cast.member, "19.00")
    return cast


def test_team_budget_just_under_is_allowed(team_at_49: Cast) -> None:
    decision = check_launch(
        membership(team_at_49, "member"), "acme/image", estimated_cost=D("0.99")
    )
    assert decision.allowed and not decision.needs_confirmation
    assert decision.team_spent == D("49.00")


def test_team_budget_reached_exactly_is_allowed(team_at_49: Cast) -> None:
    decision = check_launch(
        membership(team_at_49, "member"), "acme/image", estimated_cost=D("1.00")
    )
    assert decision.allowed


def test_team_budget_a_cent_over_is_refused_with_the_amounts(team_at_49: Cast) -> None:
    decision = check_launch(
        membership(team_at_49, "member"), "acme/image", estimated_cost=D("1.01")
    )
    assert not decision.allowed
    assert decision.message == "This would take the team to $50.01 of its $50.00 monthly budget."


def test_team_budget_counts_every_run_of_a_batch(team_at_49: Cast) -> None:
    member = membership(team_at_49, "member")
    at = check_launch(member, "acme/image", estimated_cost=D("0.25"), count=4)
    over = check_launch(member, "acme/image", estimated_cost=D("0.25"), count=5)
    assert at.allowed and at.estimated_cost == D("1.00")
    assert not over.allowed
    assert "$50.25 of its $50.00" in over.message


def test_spend_of_last_month_does_not_count(cast: Cast) -> None:
    cast.team.monthly_budget = D("10")
    cast.team.save()
    spend(cast, cast.member, "100", created_at=month_start() - timedelta(seconds=1))
    decision = check_launch(membership(cast, "member"), "acme/image", estimated_cost=D("10"))
    assert decision.allowed


def test_unknown_price_is_allowed_under_budget_and_refused_once_used_up(cast: Cast) -> None:
    cast.team.monthly_budget = D("5")
    cast.team.save()
    spend(cast, cast.member, "4.99")
    under = check_launch(membership(cast, "member"), "acme/image", estimated_cost=None)
    assert under.allowed and under.estimated_cost is None
    assert "cannot be estimated" in under.message
    spend(cast, cast.member, "0.01")
    used_up = check_launch(membership(cast, "member"), "acme/image", estimated_cost=None)
    assert not used_up.allowed
    assert used_up.message == "The team has already used $5.00 of its $5.00 monthly budget."


def test_runs_in_flight_count_at_their_estimated_price(cast: Cast) -> None:
    RunflowModel.objects.create(api_url=API, model_id="acme/video", price_label="$0.10 per second")
    cast.team.monthly_budget = D("3.00")
    cast.team.save()
    spend(cast, cast.member, "1.00")
    # Two runs of 5 s in flight: $1.00 not billed yet. A failed one is never billed.
    for status in (Status.RUNNING, Status.QUEUED, Status.FAILED):
        Run.objects.create(
            team=cast.team,
            created_by=cast.member,
            api_url=API,
            model_id="acme/video",
            status=status,
            input={"duration": 5},
        )
    assert month_spend(cast.team) == D("2.00")
    assert check_launch(membership(cast, "member"), "acme/video", estimated_cost=D("1")).allowed
    refused = check_launch(membership(cast, "member"), "acme/video", estimated_cost=D("1.01"))
    assert "$3.01 of its $3.00" in refused.message


# ---------- Member budget at the boundary ----------


@pytest.fixture
def member_at_9(cast: Cast) -> Cast:
    mine = membership(cast, "member")
    mine.monthly_budget = D("10.00")
    mine.save()
    spend(cast, cast.member, "9.00")
    spend(cast, cast.admin, "500.00")  # someone else's spend never counts against me
    return cast


def test_member_budget_just_under_and_at_are_allowed(member_at_9: Cast) -> None:
    mine = membership(member_at_9, "member")
    assert check_launch(mine, "acme/image", estimated_cost=D("0.99")).allowed
    assert check_launch(mine, "acme/image", estimated_cost=D("1.00")).allowed


def test_member_budget_over_is_refused_in_the_second_person(member_at_9: Cast) -> None:
    decision = check_launch(membership(member_at_9, "member"), "acme/image", estimated_cost=D("2"))
    assert not decision.allowed
    assert decision.message == "This would take you to $11.00 of your $10.00 monthly budget."
    assert decision.member_spent == D("9.00")


def test_member_budget_does_not_limit_other_members(member_at_9: Cast) -> None:
    assert check_launch(membership(member_at_9, "admin"), "acme/image", estimated_cost=D("50"))


def test_both_budgets_over_say_both(member_at_9: Cast) -> None:
    member_at_9.team.monthly_budget = D("510")
    member_at_9.team.save()
    decision = check_launch(membership(member_at_9, "member"), "acme/image", estimated_cost=D("2"))
    assert "the team to $511.00" in decision.message
    assert "you to $11.00" in decision.message


# ---------- Confirmation threshold ----------


def test_confirmation_above_threshold_only(cast: Cast) -> None:
    cast.team.confirm_threshold = D("1.00")
    cast.team.save()
    mine = membership(cast, "member")
    at = check_launch(mine, "acme/image", estimated_cost=D("1.00"))
    above = check_launch(mine, "acme/image", estimated_cost=D("1.01"))
    batch = check_launch(mine, "acme/image", estimated_cost=D("0.30"), count=4)
    assert at.allowed and not at.needs_confirmation
    assert above.allowed and above.needs_confirmation
    assert "$1.01" in above.message and "$1.00 confirmation threshold" in above.message
    assert batch.needs_confirmation and batch.message.startswith(
        "These 4 runs are estimated at $1.20"
    )


def test_unknown_price_never_asks_for_confirmation(cast: Cast) -> None:
    cast.team.confirm_threshold = D("0")
    cast.team.save()
    assert not check_launch(
        membership(cast, "member"), "x/y", estimated_cost=None
    ).needs_confirmation


def test_refusal_wins_over_confirmation(team_at_49: Cast) -> None:
    team_at_49.team.confirm_threshold = D("0.01")
    team_at_49.team.save()
    decision = check_launch(membership(team_at_49, "member"), "acme/image", estimated_cost=D("5"))
    assert not decision.allowed and not decision.needs_confirmation


# ---------- Per-model policy by role ----------


def test_viewer_may_never_launch(cast: Cast) -> None:
    decision = check_launch(membership(cast, "viewer"), "acme/image", estimated_cost=D("0"))
    assert not decision.allowed
    assert "Viewers cannot launch" in decision.message


def test_model_not_allowed_refuses_everyone(cast: Cast) -> None:
    ModelPolicy.objects.create(team=cast.team, model_id="acme/image", allowed=False)
    for who in ("admin", "member"):
        decision = check_launch(membership(cast, who), "acme/image", estimated_cost=D("0.01"))
        assert not decision.allowed
        assert decision.message.startswith("acme/image is not allowed in Acme.")
    assert check_launch(membership(cast, "member"), "acme/other", estimated_cost=D("0.01"))


def test_admin_only_model(cast: Cast) -> None:
    ModelPolicy.objects.create(team=cast.team, model_id="acme/image", min_role=Role.ADMIN)
    member = check_launch(membership(cast, "member"), "acme/image", estimated_cost=D("0.01"))
    admin = check_launch(membership(cast, "admin"), "acme/image", estimated_cost=D("0.01"))
    assert not member.allowed
    assert member.message == "In Acme, acme/image can only be launched by team admins."
    assert admin.allowed


def test_policy_of_another_team_does_not_apply(cast: Cast) -> None:
    ModelPolicy.objects.create(team=cast.other_team, model_id="acme/image", allowed=False)
    assert check_launch(membership(cast, "member"), "acme/image", estimated_cost=D("0.01")).allowed


def test_out_of_credit_reads_like_a_refusal() -> None:
    decision = out_of_credit()
    assert not decision.allowed
    assert "out of credit" in decision.message and "Top up" in decision.message


# ---------- Pricing ----------


@pytest.mark.parametrize(
    ("label", "amount", "unit"),
    [
        ("$0.04 per image", "0.04", Unit.ITEM),
        ("$0.04/image", "0.04", Unit.ITEM),
        ("$0.03 per output image", "0.03", Unit.ITEM),
        ("$0.10 per second", "0.10", Unit.SECOND),
        ("$0.10/s", "0.10", Unit.SECOND),
        ("$0.10 per second of video", "0.10", Unit.SECOND),
        ("$1.20 per minute", "1.20", Unit.MINUTE),
        ("$0.02 / megapixel", "0.02", Unit.MEGAPIXEL),
        ("$0.15", "0.15", Unit.FLAT),
        ("$0.15 per request", "0.15", Unit.FLAT),
        ("0.5 USD per run", "0.5", Unit.FLAT),
        ("Free", "0", Unit.FLAT),
    ],
)
def test_price_labels_we_understand(label: str, amount: str, unit: Unit) -> None:
    price = parse_price_label(label)
    assert price is not None
    assert price.amount == D(amount) and price.unit is unit


@pytest.mark.parametrize(
    "label", ["", "varies", "$0.04 to $0.08 per image", "$0.05 per token", "from $1 / $2"]
)
def test_price_labels_we_refuse(label: str) -> None:
    assert parse_price_label(label) is None


def model(label: str, inputs: list[dict[str, object]] | None = None) -> RunflowModel:
    return RunflowModel(api_url=API, model_id="m/x", price_label=label, inputs=inputs or [])


def test_estimate_per_image_multiplies_by_the_count_asked_for() -> None:
    assert estimate_cost(model("$0.04 per image"), {"prompt": "a"}) == D("0.04")
    assert estimate_cost(model("$0.04 per image"), {"num_images": 3}) == D("0.12")
    with_default = model("$0.04 per image", [{"name": "num_images", "default_value": 2}])
    assert estimate_cost(with_default, {}) == D("0.08")
    assert estimate_cost(model("$0.04 per image"), {"num_images": 1.5}) is None


def test_estimate_per_second_needs_a_duration() -> None:
    assert estimate_cost(model("$0.10 per second"), {"duration": 5}) == D("0.50")
    assert estimate_cost(model("$0.10 per second"), {"duration": "8s"}) == D("0.80")
    defaulted = model("$0.10 per second", [{"name": "duration", "default_value": "10"}])
    assert estimate_cost(defaulted, {"duration": ""}) == D("1.00")
    assert estimate_cost(model("$0.10 per second"), {"prompt": "no duration"}) is None
    assert estimate_cost(model("$1.20 per minute"), {"duration": 30}) == D("0.60")


def test_estimate_flat_and_megapixel_and_unknown() -> None:
    assert estimate_cost(model("$0.15"), {"num_images": 4}) == D("0.15")
    assert estimate_cost(model("$0.02 per megapixel"), {"width": 1000, "height": 2000}) == D("0.04")
    assert estimate_cost(model("$0.02 per megapixel"), {"image_size": "1000x1000"}) == D("0.02")
    assert estimate_cost(model("$0.02 per megapixel"), {}) is None
    assert estimate_cost(model("ask sales"), {}) is None
    assert estimate_cost(None, {}) is None


def test_money_formatting() -> None:
    assert format_usd(D("51.2")) == "$51.20"
    assert format_usd(D("1234.5")) == "$1,234.50"
    assert format_usd(D("0.004")) == "$0.004"
    assert format_usd(None) == "unknown"


def test_month_spend_is_in_the_site_time_zone(cast: Cast) -> None:
    start = month_start()
    assert timezone.localtime(start).day == 1 and timezone.localtime(start).hour == 0
