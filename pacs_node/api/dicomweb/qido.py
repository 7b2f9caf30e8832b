"""QIDO-RS (PS3.18 §10.6): search the studies, series and instances the node holds.

Attributes come from the files' headers (the first object of a study or series stands for it)
and from what the node counts (series, instances, modalities in a study). Results are in arrival
order; ``limit`` and ``offset`` page them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydicom import Dataset
from pydicom.tag import BaseTag, Tag

from pacs_node.api.auth import Viewer
from pacs_node.api.dicomweb.attributes import header, pick, plain_tags
from pacs_node.api.dicomweb.catalog import HeldObject, Scope, held_objects
from pacs_node.api.dicomweb.context import (
    DicomWebContext,
    get_dicomweb,
    path_uid,
    retrieve_url,
)
from pacs_node.api.dicomweb.matching import Filter, Query, QueryError, parse_query
from pacs_node.api.dicomweb.multipart import DICOM_JSON

router = APIRouter()
Context = Annotated[DicomWebContext, Depends(get_dicomweb)]


def _tags(*keywords: str) -> list[BaseTag]:
    return [Tag(keyword) for keyword in keywords]


STUDY_TAGS = _tags(
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
)
SERIES_TAGS = _tags(
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesInstanceUID",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)
INSTANCE_TAGS = _tags(
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)
MODALITY, MODALITIES_IN_STUDY = Tag("Modality"), Tag("ModalitiesInStudy")


class _Search:
    """One search: the request, the parsed query and the objects in scope, grouped."""

    def __init__(
        self, request: Request, context: DicomWebContext, study: str | None, series: str | None
    ) -> None:
        try:
            self.query = parse_query(request.query_params.multi_items())
        except QueryError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        self.request, self.spool, self.scoped = request, context.spool, study is not None
        scope = Scope(
            studies=[study] if study is not None else self.query.uids("StudyInstanceUID"),
            series=[series] if series is not None else self.query.uids("SeriesInstanceUID"),
            sops=self.query.uids("SOPInstanceUID"),
        )
        with context.sessions() as session:
            self.objects = held_objects(session, scope)

    def header(self, held: HeldObject) -> Dataset:
        return header(self.spool.path_of(held.path))

    def extras(self, source: Dataset) -> list[BaseTag]:
        """The tags a result carries beyond its level's: included fields and matching keys."""
        tags = [*self.query.include, *(f.tag for f in self.query.filters)]
        return tags + plain_tags(source) if self.query.include_all else tags

    def groups(self, key: Callable[[HeldObject], str]) -> list[list[HeldObject]]:
        grouped: dict[str, list[HeldObject]] = {}
        for held in self.objects:
            grouped.setdefault(key(held), []).append(held)
        return list(grouped.values())

    def study(self, objects: list[HeldObject]) -> Dataset:
        first = objects[0]
        source = self.header(first)
        ds = Dataset()
        pick(source, STUDY_TAGS + self.extras(source), ds)
        series = {held.series_uid: held for held in objects}
        modalities = {str(self.header(held).get("Modality", "")) for held in series.values()}
        ds.StudyInstanceUID = first.study_uid
        ds.ModalitiesInStudy = sorted(modalities - {""})
        ds.NumberOfStudyRelatedSeries = len(series)
        ds.NumberOfStudyRelatedInstances = len(objects)
        ds.RetrieveURL = retrieve_url(self.request, first.study_uid)
        return ds

    def series(self, objects: list[HeldObject]) -> Dataset:
        first = objects[0]
        source = self.header(first)
        ds = Dataset()
        pick(source, self._level_tags(SERIES_TAGS) + self.extras(source), ds)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = first.study_uid, first.series_uid
        ds.NumberOfSeriesRelatedInstances = len(objects)
        ds.RetrieveURL = retrieve_url(self.request, first.study_uid, first.series_uid)
        return ds

    def instance(self, held: HeldObject) -> Dataset:
        source = self.header(held)
        ds = Dataset()
        tags = self._level_tags(INSTANCE_TAGS + SERIES_TAGS) + self.extras(source)
        pick(source, tags, ds)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = held.study_uid, held.series_uid
        ds.SOPClassUID, ds.SOPInstanceUID = held.sop_class_uid, held.sop_uid
        ds.RetrieveURL = retrieve_url(self.request, held.study_uid, held.series_uid, held.sop_uid)
        return ds

    def _level_tags(self, tags: list[BaseTag]) -> list[BaseTag]:
        """A level's tags, with the study's when the search is not within one study."""
        return tags if self.scoped else STUDY_TAGS + tags

    def answer(self, candidates: list[Dataset]) -> Response:
        found = self.query.select(candidates)
        body = json.dumps([ds.to_json_dict() for ds in found])
        return Response(body, media_type=DICOM_JSON)


def _study_level(query: Query) -> Query:
    """At the study level a Modality key matches any modality in the study."""
    filters = [
        Filter(MODALITIES_IN_STUDY, f.value) if f.tag == MODALITY else f for f in query.filters
    ]
    return Query(filters, query.include, query.include_all, query.limit, query.offset)


@router.get("/studies", summary="QIDO-RS: search studies")
def search_studies(request: Request, context: Context, _: Viewer) -> Response:
    """Studies matching the query."""
    search = _Search(request, context, None, None)
    search.query = _study_level(search.query)
    groups = search.groups(lambda held: held.study_uid)
    return search.answer([search.study(group) for group in groups])


@router.get("/series", summary="QIDO-RS: search series")
def search_series(request: Request, context: Context, _: Viewer) -> Response:
    """Series of any study matching the query."""
    search = _Search(request, context, None, None)
    return search.answer([search.series(g) for g in search.groups(lambda h: h.series_uid)])


@router.get("/studies/{study}/series", summary="QIDO-RS: search a study's series")
def search_study_series(request: Request, study: str, context: Context, _: Viewer) -> Response:
    """Series of ``study`` matching the query."""
    search = _Search(request, context, path_uid(study, "Study Instance UID"), None)
    return search.answer([search.series(g) for g in search.groups(lambda h: h.series_uid)])


@router.get("/instances", summary="QIDO-RS: search instances")
def search_instances(request: Request, context: Context, _: Viewer) -> Response:
    """Instances of any study matching the query."""
    search = _Search(request, context, None, None)
    return search.answer([search.instance(held) for held in search.objects])


@router.get("/studies/{study}/instances", summary="QIDO-RS: search a study's instances")
def search_study_instances(request: Request, study: str, context: Context, _: Viewer) -> Response:
    """Instances of ``study`` matching the query."""
    search = _Search(request, context, path_uid(study, "Study Instance UID"), None)
    return search.answer([search.instance(held) for held in search.objects])


@router.get(
    "/studies/{study}/series/{series}/instances", summary="QIDO-RS: search a series' instances"
)
def search_series_instances(
    request: Request, study: str, series: str, context: Context, _: Viewer
) -> Response:
    """Instances of ``series`` in ``study`` matching the query."""
    search = _Search(
        request,
        context,
        path_uid(study, "Study Instance UID"),
        path_uid(series, "Series Instance UID"),
    )
    return search.answer([search.instance(held) for held in search.objects])
