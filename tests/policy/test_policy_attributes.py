# ruff: noqa: E501  (the tables mirror upstream requestinfo_test.go one case per line)
"""Attributes from HTTP requests (RequestInfo, upstream requestinfo_test.go) and from events."""

from __future__ import annotations

import pytest

from kaudit.model import decode_event
from kaudit.policy import Attributes, User, from_event, from_http
from kaudit.policy.attributes import RequestInfoError

# method, url, verb, group, version, namespace, resource, subresource, name
SUCCESS = [
    ("GET", "/api/v1/namespaces", "list", "", "v1", "", "namespaces", "", ""),
    ("GET", "/api/v1/namespaces/other", "get", "", "v1", "other", "namespaces", "", "other"),
    ("GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""),
    ("HEAD", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""),
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "", "v1", "new-namespace", "namespaces", "", "new-namespace"),
    # special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=true", "watch", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=false", "list", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "", "v1", "other", "pods", "", ""),
    # subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "", "v1", "other", "pods", "status", "foo"),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "", "v1", "other", "pods", "proxy", "foo"),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "", "v1", "other", "namespaces", "finalize", "other"),
    ("PUT", "/api/v1/namespaces/other/status", "update", "", "v1", "other", "namespaces", "status", "other"),
    # verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "", "v1", "other", "pods", "", "foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "", "v1", "other", "pods", "", "foo"),
    ("POST", "/api/v1/namespaces/other/pods", "create", "", "v1", "other", "pods", "", ""),
    ("OPTIONS", "/api/v1/namespaces/other/pods", "", "", "v1", "other", "pods", "", ""),
    # deletecollection
    ("DELETE", "/api/v1/nodes", "deletecollection", "", "v1", "", "nodes", "", ""),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "", "v1", "", "namespaces", "", ""),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "", "v1", "other", "pods", "", ""),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "extensions", "v1", "other", "pods", "", ""),
    # api group and version identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "extensions", "v1", "other", "pods", "", ""),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "extensions", "v1beta3", "other", "pods", "", ""),
    # percent-decoding and full URLs
    ("GET", "/api/v1/namespaces/a%20b/pods/x%2Fy", "get", "", "v1", "a b", "pods", "y", "x"),
    ("GET", "https://k8s.example:6443/apis/apps/v1/deployments", "list", "apps", "v1", "", "deployments", "", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "verb", "group", "version", "ns", "res", "sub", "name"), SUCCESS
)
def test_request_info(
    method: str,
    url: str,
    verb: str,
    group: str,
    version: str,
    ns: str,
    res: str,
    sub: str,
    name: str,
) -> None:
    a = from_http(method, url)
    assert a.resource_request
    assert (a.verb, a.api_group, a.api_version, a.namespace, a.resource, a.subresource, a.name) == (
        verb, group, version, ns, res, sub, name,
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/api/version/",
        "/apis/group/version/",
        "/badprefix/version/resource",
        "/apis/version/resource",
        "/not-api/version/resource",
        "/apis/extensions/v1beta1",
        "/api/version",
        "/api",
        "",
        "/healthz",
    ],
)
def test_non_resource_requests(url: str) -> None:
    a = from_http("GET", url)
    assert not a.resource_request
    assert a.verb == "get"
    assert (a.resource, a.api_group, a.namespace) == ("", "", "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/api/version/resource", True),
        ("/apis/group/version/resource/name/subresource", True),
        ("/api/version/resource/name/subresource", True),
        ("/apis/batch/v1/job", True),
        ("/apis/batch/v1/job/foo", True),
        ("/apis/batch/v1/job/foo/scale", True),
    ],
)
def test_get_non_api_request_info(url: str, expected: bool) -> None:
    assert from_http("GET", url).resource_request is expected


def test_non_resource_verb_is_lower_case_method_and_path_decoded() -> None:
    a = from_http("POST", "/logs/a%20b.log?x=1")
    assert a == Attributes(None, "post", path="/logs/a b.log")


# name, url, expected name, expected verb (upstream TestFieldSelectorParsing + more)
FIELD_SELECTOR = [
    ("no selector", "/apis/group/version/resource", "", "list"),
    ("metadata.name selector", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
    ("with watch", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch"),
    ("random selector", "/apis/group/version/resource?fieldSelector=foo=bar", "", "list"),
    ("invalid selector", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
    ("invalid with watch", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch"),
    ("invalid with watch false", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list"),
    ("double equals", "/apis/g/v/r?fieldSelector=metadata.name%3D%3Dn2", "n2", "list"),
    ("not equals", "/apis/g/v/r?fieldSelector=metadata.name!%3Dn2", "", "list"),
    ("and terms", "/apis/g/v/r?fieldSelector=spec.x%3Dy,metadata.name%3Dn3", "n3", "list"),
    ("escaped comma", "/apis/g/v/r?fieldSelector=metadata.name%3Da%5C,b", "a,b", "list"),
    ("invalid path segment", "/apis/g/v/r?fieldSelector=metadata.name%3D..", "", "list"),
    ("bad limit drops name", "/apis/g/v/r?limit=x&fieldSelector=metadata.name%3Dn", "", "list"),
    ("watch empty is true", "/apis/g/v/r?watch=", "", "watch"),
    ("watch FALSE", "/apis/g/v/r?watch=FALSE", "", "list"),
    ("watch yes", "/apis/g/v/r?watch=yes", "", "watch"),
    ("name in path wins", "/apis/g/v/r/n?fieldSelector=metadata.name%3Dother", "n", "get"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "url", "name", "verb"), FIELD_SELECTOR)
def test_field_selector_and_watch(case: str, url: str, name: str, verb: str) -> None:
    a = from_http("GET", url)
    assert (a.name, a.verb) == (name, verb), case


def test_delete_with_field_selector_name_is_delete() -> None:
    # The name from the selector is only taken for GETs, so this stays a collection.
    a = from_http("DELETE", "/api/v1/namespaces/x/pods?fieldSelector=metadata.name%3Dp")
    assert (a.verb, a.name) == ("deletecollection", "")


def test_watch_verb_in_path_without_resource_is_refused_as_upstream() -> None:
    for url in ("/api/v1/watch", "/apis/apps/v1/proxy/"):
        with pytest.raises(RequestInfoError, match="unable to determine kind and namespace"):
            from_http("GET", url)


def test_user_is_kept() -> None:
    u = User("alice", ("dev",))
    assert from_http("GET", "/healthz", u).user == u


EVENT = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x",'
    b'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a%20b/pods/p?dryRun=All",'
    b'"verb":"delete","user":{"username":"bob","groups":["g1","g2"]},'
    b'"objectRef":{"resource":"pods","namespace":"a b","name":"p","apiVersion":"v1",'
    b'"subresource":"eviction"},"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
    b'"stageTimestamp":"2024-05-06T07:08:09.123456Z"}'
)


def test_from_event_resource() -> None:
    a = from_event(decode_event(EVENT))
    assert a == Attributes(
        User("bob", ("g1", "g2")),
        "delete",
        "a b",
        "",
        "v1",
        "pods",
        "eviction",
        "p",
        "/api/v1/namespaces/a b/pods/p",
        True,
    )


def test_from_event_no_user_and_non_resource() -> None:
    ev = decode_event(
        b'{"level":"Metadata","auditID":"y","stage":"ResponseStarted","requestURI":"/healthz?v",'
        b'"verb":"get","user":{},"requestReceivedTimestamp":null,"stageTimestamp":null}'
    )
    assert from_event(ev) == Attributes(None, "get", path="/healthz")


def test_from_event_empty_username_is_no_user() -> None:
    ev = decode_event(
        b'{"level":"Metadata","auditID":"y","stage":"ResponseStarted","requestURI":"/x",'
        b'"verb":"get","user":{"username":"","groups":["system:unauthenticated"]},'
        b'"objectRef":{"resource":"nodes"},"requestReceivedTimestamp":null,"stageTimestamp":null}'
    )
    a = from_event(ev)
    assert a.user is None and a.resource_request and a.resource == "nodes"
