"""The OpenAPI 3.1 document of /api/v1, built from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

from ..cases.loop import ALLOWED_FROM
from .schemas import (
    AccountOut,
    CaseAction,
    CaseList,
    CaseOut,
    CaseReport,
    CategoryOut,
    ErrorOut,
    HeartbeatIn,
    HotlineWorkOrder,
    PatrolIn,
    PatrolOut,
    PhotoOut,
    SignInIn,
    SignInOut,
    TokenOut,
    TokenRequest,
    VisitIn,
    VisitOut,
)

REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    TokenRequest,
    TokenOut,
    AccountOut,
    CaseReport,
    HotlineWorkOrder,
    CaseAction,
    CaseOut,
    CaseList,
    CategoryOut,
    PhotoOut,
    ErrorOut,
    HeartbeatIn,
    SignInIn,
    SignInOut,
    PatrolIn,
    PatrolOut,
    VisitIn,
    VisitOut,
]
ACTIONS = list(ALLOWED_FROM)  # the steps of the loop, as cases.actions.perform takes them


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model_or_schema) -> dict:
    schema = _ref(model_or_schema) if isinstance(model_or_schema, type) else model_or_schema
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    words = {
        400: "请求体不是合法的 JSON",
        401: "未登录或令牌无效",
        403: "超出角色或辖区",
        404: "不存在或不在辖区内",
        405: "方法不支持",
        409: "状态冲突",
        413: "内容过大",
        415: "内容类型不支持",
        422: "字段有误（field 指明字段）",
        429: "请求过于频繁",
        503: "数据库暂时不可用",
    }
    return {str(code): {"description": words[code], **_json(ErrorOut)} for code in codes}


COMMON = (401, 403, 405, 429, 503)


@lru_cache(maxsize=1)
def build_document() -> dict:
    schemas: dict = {}
    for model in MODELS:
        schema = model.model_json_schema(
            ref_template=REF,
            mode="serialization" if model.__name__.endswith("Out") or model in (CaseList,) else "validation",
        )
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema
    case_id = {
        "name": "case_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    }
    bearer = [{"bearer": []}]
    paths = {
        "/api/v1/tokens": {
            "post": {
                "summary": "移动端登录，换取访问令牌",
                "operationId": "createToken",
                "security": [],
                "requestBody": {"required": True, **_json(TokenRequest)},
                "description": "错误的用户名、密码、锁定或停用的账号一律答 401（同一提示，不泄露账号是否存在）；"
                "须先修改密码的账号答 403（field 为 password）。",
                "responses": {
                    "201": {"description": "令牌", **_json(TokenOut)},
                    **_errors(400, 401, 403, 405, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "本账号的有效访问令牌",
                "operationId": "listTokens",
                "security": bearer,
                "responses": {
                    "200": {
                        "description": "令牌列表（不含令牌本身）",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["items"],
                                    "properties": {
                                        "items": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id", "name", "created_at", "expires_at"],
                                                "properties": {
                                                    "id": {"type": "integer"},
                                                    "name": {"type": "string"},
                                                    "created_at": {"type": "string", "format": "date-time"},
                                                    "last_used_at": {"type": ["string", "null"], "format": "date-time"},
                                                    "expires_at": {"type": "string", "format": "date-time"},
                                                },
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    **_errors(*COMMON),
                },
            },
        },
        "/api/v1/tokens/{token_id}": {
            "delete": {
                "summary": "吊销本账号的一个访问令牌（手机丢失时）",
                "operationId": "revokeToken",
                "security": bearer,
                "parameters": [
                    {
                        "name": "token_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                    }
                ],
                "responses": {"204": {"description": "已吊销"}, **_errors(*COMMON, 404)},
            }
        },
        "/api/v1/me": {
            "get": {
                "summary": "当前账号",
                "operationId": "me",
                "security": bearer,
                "responses": {"200": {"description": "账号", **_json(AccountOut)}, **_errors(*COMMON)},
            }
        },
        "/api/v1/cases": {
            "post": {
                "summary": "网格员上报事件（client_key 幂等）",
                "operationId": "reportCase",
                "security": bearer,
                "requestBody": {"required": True, **_json(CaseReport)},
                "responses": {
                    "201": {"description": "已创建", **_json(CaseOut)},
                    "200": {"description": "同一 client_key 已创建过，返回原案件", **_json(CaseOut)},
                    **_errors(400, 409, 413, 415, 422, *COMMON),
                },
            },
            "get": {
                "summary": "本辖区案件列表（按编号倒序分页）",
                "operationId": "listCases",
                "security": bearer,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "reported",
                                "registered",
                                "dispatched",
                                "handling",
                                "feedback",
                                "closed",
                                "rejected",
                                "duplicate",
                            ],
                        },
                    },
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["ordinary", "hazard", "dispute"]},
                    },
                    {"name": "before_id", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": "案件", **_json(CaseList)}, **_errors(422, *COMMON)},
            },
        },
        "/api/v1/cases/{case_id}": {
            "get": {
                "summary": "案件详情及处理过程",
                "operationId": "getCase",
                "security": bearer,
                "parameters": [case_id],
                "responses": {"200": {"description": "案件", **_json(CaseOut)}, **_errors(404, *COMMON)},
            }
        },
        "/api/v1/cases/{case_id}/actions/{action}": {
            "post": {
                "summary": "办理一步（立案、派遣、签收、反馈、结案、返工、流转、重新定位……）",
                "description": (
                    "接收 (accept) 与反馈 (feedback) 可带 client_key（App 离线队列的幂等键）：同一账号以同一 client_key"
                    " 重发时返回 200 与已办理的那一步（不会再办一步，即使案件状态已经往前走了），回答中的 step"
                    " 为该键对应的步骤 {id, at, action, to_state}；其他账号用同一键被拒绝（422，field 为"
                    " client_key）；其他操作带 client_key 同样被拒绝。"
                    "重新定位 (relocate，待立案/已立案，权限 case.register)：带 address_id（标准地址，见"
                    " /hotline/addresses.json）或 lat+lon（WGS-84，可另带 address 文字）；新位置须落在本辖区的网格内，"
                    "否则 422（field 为 lat、lon 或 address）；网格、村社、镇街随之更新，并记一步 relocate。"
                ),
                "operationId": "caseAction",
                "security": bearer,
                "parameters": [
                    case_id,
                    {"name": "action", "in": "path", "required": True, "schema": {"type": "string", "enum": ACTIONS}},
                ],
                "requestBody": {"required": True, **_json(CaseAction)},
                "responses": {
                    "200": {"description": "办理后的案件", **_json(CaseOut)},
                    **_errors(400, 404, 409, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/cases/{case_id}/photos": {
            "post": {
                "summary": "上传案件照片（JPEG/PNG，按内容去重）",
                "operationId": "uploadPhoto",
                "security": bearer,
                "parameters": [case_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {"file": {"type": "string", "format": "binary"}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": {"description": "已保存", **_json(PhotoOut)},
                    "200": {"description": "同一照片已存在", **_json(PhotoOut)},
                    **_errors(404, 413, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/hotline/work-orders": {
            "post": {
                "summary": "12345 热线工单转入（工单号幂等）",
                "operationId": "hotlineWorkOrder",
                "security": bearer,
                "requestBody": {"required": True, **_json(HotlineWorkOrder)},
                "responses": {
                    "201": {"description": "已创建", **_json(CaseOut)},
                    "200": {"description": "该工单已受理", **_json(CaseOut)},
                    **_errors(400, 409, 413, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/heartbeats": {
            "post": {
                "summary": "App 在线心跳",
                "operationId": "heartbeat",
                "security": bearer,
                "requestBody": {"required": True, **_json(HeartbeatIn)},
                "responses": {"204": {"description": "已记录"}, **_errors(400, 413, 415, 422, *COMMON)},
            }
        },
        "/api/v1/sign-ins": {
            "post": {
                "summary": "每日签到（每天一次，重复返回当天记录）",
                "description": (
                    "离线保存后补发的签到带 at（手机上签到的时间，带时区偏移的 ISO 8601 或 unix 秒）：不得晚于当前"
                    "时间（允许 5 分钟误差）、不得早于 12 小时前，否则 422（field 为 at）；签到日为 at 的本地日期。"
                    "不带 at 时以到达时间为准。"
                ),
                "operationId": "signIn",
                "security": bearer,
                "requestBody": {"required": True, **_json(SignInIn)},
                "responses": {
                    "201": {"description": "已签到", **_json(SignInOut)},
                    "200": {"description": "今天已签到", **_json(SignInOut)},
                    **_errors(400, 413, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/patrols": {
            "post": {
                "summary": "上传巡查记录与轨迹（client_key 幂等）",
                "operationId": "patrol",
                "security": bearer,
                "requestBody": {"required": True, **_json(PatrolIn)},
                "responses": {
                    "201": {"description": "已记录", **_json(PatrolOut)},
                    "200": {"description": "已记录过", **_json(PatrolOut)},
                    **_errors(400, 413, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/visits": {
            "post": {
                "summary": "走访记录（人员或场所，client_key 幂等）",
                "operationId": "visit",
                "security": bearer,
                "requestBody": {"required": True, **_json(VisitIn)},
                "responses": {
                    "201": {"description": "已记录", **_json(VisitOut)},
                    "200": {"description": "已记录过", **_json(VisitOut)},
                    **_errors(400, 413, 415, 422, *COMMON),
                },
            }
        },
        "/api/v1/assessment/{month}": {
            "get": {
                "summary": "月度考核表（十项指标、总分、名次、短板；已结账月份返回冻结结果）",
                "operationId": "assessment",
                "security": bearer,
                "parameters": [
                    {
                        "name": "month",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^\\d{4}-\\d{2}$"},
                        "example": "2026-11",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "考核表：indicators、rows（镇街账号只含本镇街一行）",
                        **_json({"type": "object"}),
                    },
                    **_errors(400, 404, *COMMON),
                },
            }
        },
        "/api/v1/categories": {
            "get": {
                "summary": "事件类别树",
                "operationId": "categories",
                "security": bearer,
                "responses": {
                    "200": {"description": "类别", **_json({"type": "array", "items": _ref(CategoryOut)})},
                    **_errors(*COMMON),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "网格化社会治理指挥中心 API",
            "version": "1.0.0",
            "description": "移动端、12345 热线系统与第三方系统接入。错误统一为 {error: {message, field}}。",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
