"""The DICOMweb message codec and QIDO-RS matching, without a server."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.tag import Tag

from pacs_node.api.dicomweb.matching import QueryError, parse_query
from pacs_node.api.dicomweb.multipart import (
    MultipartError,
    encode_parts,
    parse_accept,
    parse_media_type,
    parse_multipart,
)


def test_a_body_from_another_encoder_parses_into_its_parts() -> None:
    body = (
        b"preamble\r\n--b0\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b0 \t\r\n"
        b"\r\nsecond, with --b0 inside a line\r\n--b0--\r\nepilogue"
    )
    parts = parse_multipart(body, "b0")
    assert [p.content for p in parts] == [b"first", b"second, with --b0 inside a line"]
    assert parts[0].content_type == parse_media_type("application/dicom")
    assert parts[1].content_type is None


def test_our_encoding_parses_back() -> None:
    contents = [b"\x00\r\n--x", b"", b"abc" * 1000]
    body = b"".join(encode_parts([("application/dicom", c) for c in contents], "bnd"))
    assert [p.content for p in parse_multipart(body, "bnd")] == contents


@pytest.mark.parametrize(
    "body",
    [b"no delimiter at all", b"--b\r\nContent-Type: x\r\n\r\nno end", b"--b\r\nbad header\r\n\r\n"],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(body, "b")


def test_media_types_and_accept_headers() -> None:
    media = parse_media_type('Multipart/Related; type="application/dicom"; boundary=abc')
    assert media.type == "multipart/related"
    assert media.parameters == {"type": "application/dicom", "boundary": "abc"}
    ranges = parse_accept(
        'multipart/related; type="application/octet-stream"; transfer-syntax=*, */*;q=0.1'
    )
    assert [r.type for r in ranges] == ["multipart/related", "*/*"]
    assert ranges[0].parameters["transfer-syntax"] == "*"
    assert parse_accept(None)[0].matches("application/dicom")


def _study(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_matching_keys_wildcards_ranges_and_uid_lists() -> None:
    a = _study(PatientName="Doe^Jane", StudyDate="20240105", StudyInstanceUID="1.2.3")
    b = _study(PatientName="Roe^John", StudyDate="20250601", StudyInstanceUID="1.2.4")
    c = _study(PatientName="Doe^John", StudyDate="20230101", StudyInstanceUID="1.2.5")

    def found(query: str) -> list[str]:
        items = [(name, value) for name, _, value in (i.partition("=") for i in query.split("&"))]
        return [ds.StudyInstanceUID for ds in parse_query(items).select([a, b, c])]

    assert found("PatientName=doe*") == ["1.2.3", "1.2.5"]
    assert found("PatientName=?oe^J*n") == ["1.2.4", "1.2.5"]
    assert found("StudyDate=20240101-20251231") == ["1.2.3", "1.2.4"]
    assert found("StudyDate=-20240105") == ["1.2.3", "1.2.5"]
    assert found("StudyInstanceUID=1.2.5,1.2.3") == ["1.2.3", "1.2.5"]
    assert found("00100010=&limit=1&offset=1") == ["1.2.4"]
    assert found("AccessionNumber=X") == []


@pytest.mark.parametrize("item", [("NoSuchKeyword", "x"), ("limit", "0"), ("offset", "-1")])
def test_bad_query_parameters_are_refused(item: tuple[str, str]) -> None:
    with pytest.raises(QueryError):
        parse_query([item])


def test_includefield_takes_keywords_tags_and_all() -> None:
    query = parse_query([("includefield", "StudyDescription,00080050"), ("includefield", "all")])
    assert query.include == [Tag("StudyDescription"), Tag("AccessionNumber")]
    assert query.include_all
