import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.offer_factory import make_offer, offers_strategy
from vastmarket.packed_offers import PackedOffers

ODD = [make_offer(2**70, host_id=2**65, machine_id=None, public_ip="203.0.113.9", cuda_max_good=12.4,
                  min_bid=0.071, dph_base=0.18, geolocation=None, dph_total=None),
       make_offer(-3, gpu_name="Ünïcode GPU ✓", reliability=float("inf"), duration_s=0.0)]


@settings(max_examples=200, deadline=None)
@given(offers=offers_strategy.map(lambda xs: xs + ODD), data=st.data())
def test_packed_offers_read_back_equal_by_index_slice_and_iteration(offers, data):
    packed = PackedOffers(offers)
    assert len(packed) == len(offers)
    assert list(packed) == offers
    i = data.draw(st.integers(-len(offers), len(offers) - 1))
    assert packed[i] == offers[i]
    start, stop, step = (data.draw(st.integers(-50, 50)) for _ in range(3))
    step = step or 1
    assert packed[start:stop:step] == tuple(offers[start:stop:step])


def test_reading_past_either_end_is_an_index_error():
    packed = PackedOffers(ODD)
    for index in (2, -3, 10**20):
        with pytest.raises(IndexError):
            packed[index]
    assert list(PackedOffers([])) == [] and len(PackedOffers([])) == 0


def test_each_read_is_a_new_offer_and_the_buffer_is_small():
    offers = [make_offer(i, dph_total=0.01 * i) for i in range(1, 1001)]
    packed = PackedOffers(offers)
    assert packed[5] == packed[5] and packed[5] is not packed[5]
    assert packed.nbytes < 600 * len(offers)
