import pytest

from vastmarket.client import ApiKey, RetryPolicy, VastClient, validate_query
from vastmarket.errors import ConfigError, InvalidResponse
from vastmarket.instances import RentRequest, parse_instance, parse_ports


def test_host_ports_arrive_as_strings_and_are_read_as_numbers():
    ports = {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "20000"}],
             "8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "42351"}],
             "8081/udp": [{"HostIp": "0.0.0.0", "HostPort": "42999"}]}
    assert parse_ports(ports) == {22: 20000, 8000: 42351}


@pytest.mark.parametrize("raw", [None, [], "8000", {"8000/tcp": None}, {"8000/tcp": [{"HostPort": "x"}]},
                                 {"abc/tcp": [{"HostPort": "1"}]}, {"8000/tcp": [{"HostPort": "70000"}]}])
def test_missing_or_malformed_ports_give_no_mapping(raw):
    assert parse_ports(raw) == {}


def test_an_instance_still_loading_has_no_ports_and_a_stripped_ip():
    inst = parse_instance({"id": 7, "actual_status": "loading", "ports": None,
                           "public_ipaddr": " 203.0.113.5\n", "dph_total": None})
    assert inst.pending and not inst.running and inst.ports == {}
    assert inst.public_ip == "203.0.113.5"


@pytest.mark.parametrize("status, dead", [("exited", True), ("offline", True), ("unknown", True),
                                          ("running", False), (None, False), ("loading", False)])
def test_dead_states_never_lead_to_running(status, dead):
    assert parse_instance({"id": 1, "actual_status": status}).dead is dead


def test_a_malformed_optional_field_does_not_lose_the_instance():
    inst = parse_instance({"id": 3, "actual_status": "running", "dph_total": "lots", "machine_id": "x"})
    assert inst.id == 3 and inst.dph_total is None and inst.running


@pytest.mark.parametrize("raw", [None, [], {"actual_status": "running"}, {"id": "seven"}])
def test_an_instance_without_an_id_is_an_invalid_response(raw):
    with pytest.raises(InvalidResponse):
        parse_instance(raw)


def test_the_rent_body_carries_env_as_a_dict_and_ports_as_keys():
    body = RentRequest(image="ghcr.io/x/app:1", label="kv:c1:uid", disk_gb=20, env={"A": "1"},
                       ports=(8000, 8001), args=("serve",)).body()
    assert body["env"] == {"A": "1", "-p 8000:8000": "1", "-p 8001:8001": "1"}
    assert body["client_id"] == "me" and body["runtype"] == "args" and body["args"] == ["serve"]
    assert body["cancel_unavail"] is True and body["disk"] == 20


@pytest.mark.parametrize("request_kw, message", [
    ({"image": ""}, "image"), ({"image": "x" * 1025}, "image"), ({"label": "l" * 257}, "label"),
    ({"args": ("a" * 4097,)}, "args"), ({"env": {"-p 1:1": "1"}}, "may not start"),
])
def test_rent_requests_beyond_vast_limits_are_refused(request_kw, message):
    kw = {"image": "img", "label": "l", **request_kw}
    with pytest.raises(ValueError, match=message):
        RentRequest(**kw).validate()


def test_the_api_key_never_shows_itself():
    key = ApiKey("vast_api_key_secret123")
    client = VastClient("http://127.0.0.1:1", key)
    for text in (repr(key), str(key), repr(client), f"{key}"):
        assert "secret123" not in text
    assert key.reveal() == "vast_api_key_secret123"


def test_the_api_key_comes_from_a_mounted_file_before_the_environment(tmp_path):
    path = tmp_path / "key"
    path.write_text("from-file\n")
    assert ApiKey.from_environment({"VAST_API_KEY_FILE": str(path), "VAST_API_KEY": "env"}).reveal() == "from-file"
    assert ApiKey.from_environment({"VAST_API_KEY": "env"}).reveal() == "env"
    assert ApiKey.from_environment({}) is None


def test_an_unreadable_key_file_is_a_config_error_without_the_key():
    with pytest.raises(ConfigError, match="cannot read"):
        ApiKey.from_environment({"VAST_API_KEY_FILE": "/nonexistent/key"})


@pytest.mark.parametrize("url", ["ftp://x", "console.vast.ai", "https://user:pw@console.vast.ai", "http://h/?api_key=1"])
def test_a_bad_api_url_is_refused(url):
    with pytest.raises(ConfigError):
        VastClient(url)


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter():
    policy = RetryPolicy(base_delay=0.5, factor=2, max_delay=3)
    assert [policy.delay(a, lambda: 1.0) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(3, lambda: 0.25) == 0.75


@pytest.mark.parametrize("query, message", [
    ({"gpu_name": {"like": "RTX"}}, "unknown operator"), ({"gpu_name": "RTX 3060"}, "mapping"),
    ({"gpu_name": {"in": "RTX 3060"}}, "needs a list"),
])
def test_malformed_search_filters_are_refused_before_sending(query, message):
    with pytest.raises(ValueError, match=message):
        validate_query(query)
