from tests.unit.offer_factory import make_offer
from vastmarket.explain import compact_explanation, endpoint_lines, explanation, selection_log
from vastmarket.requirements import Requirements
from vastmarket.selection import OfferTable, rank

REQ = Requirements(gpu_types=("RTX3060",), min_gpu_memory_gb=12, max_price=0.5)


def seed_like_ranking():
    offers = [
        make_offer(12345, dph_total=0.22, reliability=0.982, geolocation="California, US"),
        make_offer(12346, dph_total=0.19, reliability=0.968, geolocation="Texas, US"),
        make_offer(12347, dph_total=0.25, reliability=0.991, geolocation="Bavaria, DE"),
        make_offer(1, dph_total=0.9),
    ]
    return rank(OfferTable(offers), REQ)


def test_the_selection_log_follows_the_seed_format():
    lines = selection_log(seed_like_ranking(), selected_suffix=" - launching...")
    assert lines[0] == "[VAST] Searching for instances matching: RTX3060, 12GB+, <$0.50/hr"
    assert lines[1] == "[VAST] Found 4 candidates, filtering..."
    assert lines[2] == "[VAST] After filtering: 3 instances remain"
    assert lines[3] == "[VAST] Scoring instances:"
    assert all(line.startswith("  - Instance ") for line in lines[4:7])
    assert "(RTX3060, $0.19/hr, US-TX, 96.8% reliability)" in "\n".join(lines)
    assert "EU-DE, 99.1% reliability" in "\n".join(lines)
    assert lines[-1].startswith("[VAST] Selected instance ") and lines[-1].endswith(" - launching...")


def test_the_selection_log_without_a_match_gives_the_reason():
    lines = selection_log(rank(OfferTable([make_offer(1, dph_total=0.9)]), REQ))
    assert lines[-1] == "[VAST] no offer matches: 1 seen; 1 over $0.50/h"


def test_endpoint_lines_follow_the_seed_format():
    assert endpoint_lines([("june-stt.default.svc.cluster.local", 8001, "203.0.113.45", 42352)]) == [
        "[VAST] Instance ready, updating service endpoints:",
        "  - june-stt.default.svc.cluster.local:8001 → 203.0.113.45:42352",
    ]


def test_the_explanation_carries_counts_and_every_score_term():
    data = explanation(seed_like_ranking(), top=2)
    assert data["seen"] == 4 and data["matched"] == 3 and data["rejected"] == {"price": 1}
    assert len(data["offers"]) == 2
    assert set(data["offers"][0]["terms"]) == {"price", "performance", "gpu_match", "location", "availability"}


def test_the_compact_explanation_lists_runners_up_after_the_winner():
    compact = compact_explanation(seed_like_ranking())
    winner = seed_like_ranking().best.offer.id
    assert len(compact["runnersUp"]) == 2 and winner not in [r["id"] for r in compact["runnersUp"]]


def test_the_selection_log_names_the_offer_actually_taken_and_why():
    ranking = seed_like_ranking()
    best, second = ranking.ranked[0], ranking.ranked[1]
    lines = selection_log(ranking, top=1, selected_suffix=" - launching...", selected=second,
                          why="the webhook's offer was taken by another pod's launch")
    assert lines[-1] == (f"[VAST] Selected instance {second.offer.id} - launching... (not the top offer "
                         f"{best.offer.id}: the webhook's offer was taken by another pod's launch)")
    assert lines[-2].startswith(f"  - Instance {second.offer.id}: "), "the taken offer is shown with its score"
    assert selection_log(ranking, selected=best, why="ignored")[-1] == f"[VAST] Selected instance {best.offer.id}"


def test_the_selection_log_works_out_only_the_offers_it_names():
    offers = [make_offer(i, dph_total=0.1 + i / 1000) for i in range(1, 200)]
    ranking = rank(OfferTable(offers), REQ)
    explained = []
    parts = ranking._parts

    class Counting:
        def explain(self, i, score):
            explained.append(i)
            return parts.explain(i, score)

        def rejections(self):
            return parts.rejections()

        def scores(self, passing):
            return parts.scores(passing)

    ranking._parts = Counting()
    lines = selection_log(ranking, top=3)
    assert len(lines) == 8 and ranking.passed == 199
    assert len(explained) == 3, "every passing offer was worked out for a log of three"
