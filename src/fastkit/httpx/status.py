"""HTTP and WebSocket status codes: Starlette's constants plus the 60x third-party codes.

Every name of the FastFlyer specification is here with its value, including the
historical spellings users already rely on (``HTTP_413_PAYLOAD_TOO_LARGE``,
``HTTP_418_I_AM_A_TEAPOT``, ``HTTP_422_UNPROCESSABLE_ENTITY`` and the seed's
``HTTP_605_THIRD_PARTY_NEWORK_ERROR``); today's Starlette names are aliases of
the same values. Nothing is imported from Starlette, so this module (and the
whole of ``fastkit.httpx``) works without it.

    >>> from fastkit.httpx import status
    >>> status.HTTP_604_THIRD_PARTY_TIMEOUT_ERROR
    604
    >>> status.describe(604)
    '请求第三方服务超时异常'
    >>> status.phrase(604)
    'Third Party Timeout'
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

HTTP_200_OK: Final = 200
HTTP_201_CREATED: Final = 201
HTTP_202_ACCEPTED: Final = 202
HTTP_203_NON_AUTHORITATIVE_INFORMATION: Final = 203
HTTP_204_NO_CONTENT: Final = 204
HTTP_205_RESET_CONTENT: Final = 205
HTTP_206_PARTIAL_CONTENT: Final = 206
HTTP_207_MULTI_STATUS: Final = 207
HTTP_208_ALREADY_REPORTED: Final = 208
HTTP_226_IM_USED: Final = 226
HTTP_300_MULTIPLE_CHOICES: Final = 300
HTTP_301_MOVED_PERMANENTLY: Final = 301
HTTP_302_FOUND: Final = 302
HTTP_303_SEE_OTHER: Final = 303
HTTP_304_NOT_MODIFIED: Final = 304
HTTP_305_USE_PROXY: Final = 305
HTTP_306_RESERVED: Final = 306
HTTP_307_TEMPORARY_REDIRECT: Final = 307
HTTP_308_PERMANENT_REDIRECT: Final = 308
HTTP_400_BAD_REQUEST: Final = 400
HTTP_401_UNAUTHORIZED: Final = 401
HTTP_402_PAYMENT_REQUIRED: Final = 402
HTTP_403_FORBIDDEN: Final = 403
HTTP_404_NOT_FOUND: Final = 404
HTTP_405_METHOD_NOT_ALLOWED: Final = 405
HTTP_406_NOT_ACCEPTABLE: Final = 406
HTTP_407_PROXY_AUTHENTICATION_REQUIRED: Final = 407
HTTP_408_REQUEST_TIMEOUT: Final = 408
HTTP_409_CONFLICT: Final = 409
HTTP_410_GONE: Final = 410
HTTP_411_LENGTH_REQUIRED: Final = 411
HTTP_412_PRECONDITION_FAILED: Final = 412
HTTP_413_PAYLOAD_TOO_LARGE: Final = 413
HTTP_414_URI_TOO_LONG: Final = 414
HTTP_415_UNSUPPORTED_MEDIA_TYPE: Final = 415
HTTP_416_RANGE_NOT_SATISFIABLE: Final = 416
HTTP_417_EXPECTATION_FAILED: Final = 417
HTTP_418_I_AM_A_TEAPOT: Final = 418
HTTP_421_MISDIRECTED_REQUEST: Final = 421
HTTP_422_UNPROCESSABLE_ENTITY: Final = 422
HTTP_423_LOCKED: Final = 423
HTTP_424_FAILED_DEPENDENCY: Final = 424
HTTP_425_TOO_EARLY: Final = 425
HTTP_426_UPGRADE_REQUIRED: Final = 426
HTTP_428_PRECONDITION_REQUIRED: Final = 428
HTTP_429_TOO_MANY_REQUESTS: Final = 429
HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE: Final = 431
HTTP_451_UNAVAILABLE_FOR_LEGAL_REASONS: Final = 451
HTTP_500_INTERNAL_SERVER_ERROR: Final = 500
HTTP_501_NOT_IMPLEMENTED: Final = 501
HTTP_502_BAD_GATEWAY: Final = 502
HTTP_503_SERVICE_UNAVAILABLE: Final = 503
HTTP_504_GATEWAY_TIMEOUT: Final = 504
HTTP_505_HTTP_VERSION_NOT_SUPPORTED: Final = 505
HTTP_506_VARIANT_ALSO_NEGOTIATES: Final = 506
HTTP_507_INSUFFICIENT_STORAGE: Final = 507
HTTP_508_LOOP_DETECTED: Final = 508
HTTP_510_NOT_EXTENDED: Final = 510
HTTP_511_NETWORK_AUTHENTICATION_REQUIRED: Final = 511
HTTP_600_THIRD_PARTY_ERROR: Final = 600
HTTP_601_THIRD_PARTY_STATUS_ERROR: Final = 601
HTTP_602_THIRD_PARTY_DATA_ERROR: Final = 602
HTTP_603_THIRD_PARTY_UNAVAILABLE_ERROR: Final = 603
HTTP_604_THIRD_PARTY_TIMEOUT_ERROR: Final = 604
HTTP_605_THIRD_PARTY_NEWORK_ERROR: Final = 605
HTTP_606_THIRD_PARTY_RETRY_ERROR: Final = 606
WS_1000_NORMAL_CLOSURE: Final = 1000
WS_1001_GOING_AWAY: Final = 1001
WS_1002_PROTOCOL_ERROR: Final = 1002
WS_1003_UNSUPPORTED_DATA: Final = 1003
WS_1005_NO_STATUS_RCVD: Final = 1005
WS_1006_ABNORMAL_CLOSURE: Final = 1006
WS_1007_INVALID_FRAME_PAYLOAD_DATA: Final = 1007
WS_1008_POLICY_VIOLATION: Final = 1008
WS_1009_MESSAGE_TOO_BIG: Final = 1009
WS_1010_MANDATORY_EXT: Final = 1010
WS_1011_INTERNAL_ERROR: Final = 1011
WS_1012_SERVICE_RESTART: Final = 1012
WS_1013_TRY_AGAIN_LATER: Final = 1013
WS_1014_BAD_GATEWAY: Final = 1014
WS_1015_TLS_HANDSHAKE: Final = 1015

# Today's Starlette names and informational codes (aliases of the values above).
HTTP_100_CONTINUE: Final = 100
HTTP_101_SWITCHING_PROTOCOLS: Final = 101
HTTP_102_PROCESSING: Final = 102
HTTP_103_EARLY_HINTS: Final = 103
HTTP_413_CONTENT_TOO_LARGE: Final = 413
HTTP_413_REQUEST_ENTITY_TOO_LARGE: Final = 413
HTTP_414_REQUEST_URI_TOO_LONG: Final = 414
HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE: Final = 416
HTTP_418_IM_A_TEAPOT: Final = 418
HTTP_422_UNPROCESSABLE_CONTENT: Final = 422
HTTP_605_THIRD_PARTY_NETWORK_ERROR: Final = 605

_DESCRIPTIONS: Final[dict[int, str]] = {
    100: '继续',
    101: '切换协议',
    102: '处理中',
    103: '早期提示',
    200: '请求成功',
    201: '资源创建成功',
    202: '请求已接受',
    203: '非权威信息',
    204: '无内容返回',
    205: '重置内容',
    206: '部分内容返回',
    207: '多状态',
    208: '已报告',
    226: 'IM已使用',
    300: '多种选择',
    301: '资源永久重定向',
    302: '资源临时重定向',
    303: '查看其他',
    304: '资源未修改',
    305: '使用代理访问',
    306: '保留',
    307: '临时重定向',
    308: '永久重定向',
    400: '请求错误',
    401: '未授权',
    402: '需要付款',
    403: '禁止访问',
    404: '资源未找到',
    405: '方法不允许',
    406: '不可接受的内容',
    407: '需要代理认证',
    408: '请求超时',
    409: '冲突',
    410: '资源不可用',
    411: '需要内容长度',
    412: '前提条件失败',
    413: '负载过大',
    414: 'URI过长',
    415: '不支持的媒体类型',
    416: '范围不符合要求',
    417: '预期失败',
    418: '我是茶壶（服务器拒绝冲泡咖啡)',
    421: '误导的请求',
    422: '无法处理的实体',
    423: '已锁定',
    424: '依赖关系失败',
    425: '太早',
    426: '需要升级协议',
    428: '需要前提条件',
    429: '请求过多',
    431: '请求头字段过大',
    451: '由于法律原因不可用',
    500: '服务器内部错误',
    501: '功能未实现',
    502: '网关错误',
    503: '服务不可用',
    504: '网关超时',
    505: '不支持的HTTP版本',
    506: '可协商的变体',
    507: '存储空间不足',
    508: '检测到循环',
    510: '未扩展',
    511: '需要网络认证',
    600: '请求第三方服务错误',
    601: '请求第三方服务返回状态码异常',
    602: '请求第三方服务返回数据异常',
    603: '请求第三方服务不可用异常',
    604: '请求第三方服务超时异常',
    605: '请求第三方服务网络异常',
    606: '第三方服务返回不符合预期重试多次还是失败',
    1000: '正常关闭',
    1001: '正在离开',
    1002: '协议错误',
    1003: '不支持的数据',
    1005: '未收到状态',
    1006: '异常关闭',
    1007: '无效的帧载荷数据',
    1008: '策略违规',
    1009: '消息过大',
    1010: '强制扩展',
    1011: '内部错误',
    1012: '服务重启',
    1013: '请稍后重试',
    1014: '网关错误',
    1015: 'TLS握手',
}

_PHRASES: Final[dict[int, str]] = {
    600: 'Third Party Error',
    601: 'Third Party Status Error',
    602: 'Third Party Data Error',
    603: 'Third Party Unavailable',
    604: 'Third Party Timeout',
    605: 'Third Party Network Error',
    606: 'Third Party Retry Error',
    1000: 'Normal Closure',
    1001: 'Going Away',
    1002: 'Protocol Error',
    1003: 'Unsupported Data',
    1005: 'No Status Received',
    1006: 'Abnormal Closure',
    1007: 'Invalid Frame Payload Data',
    1008: 'Policy Violation',
    1009: 'Message Too Big',
    1010: 'Mandatory Extension',
    1011: 'Internal Error',
    1012: 'Service Restart',
    1013: 'Try Again Later',
    1014: 'Bad Gateway',
    1015: 'TLS Handshake',
}

THIRD_PARTY_CODES: Final = frozenset(range(600, 607))
"""The 60x codes: a call to a third-party service failed."""


def describe(code: int) -> str:
    """Return the specification's (Chinese) description of ``code``.

    Raises ``KeyError`` naming the code when it is not a known status.
    """
    try:
        return _DESCRIPTIONS[int(code)]
    except KeyError:
        raise KeyError(f"unknown status code {code!r}") from None


def phrase(code: int) -> str:
    """Return the English reason phrase of ``code`` (``404`` -> ``'Not Found'``).

    Raises ``KeyError`` naming the code when it is not a known status.
    """
    code = int(code)
    if code in _PHRASES:
        return _PHRASES[code]
    if code in _DESCRIPTIONS:
        return HTTPStatus(code).phrase if code != 306 else "Reserved"
    raise KeyError(f"unknown status code {code!r}")


def is_third_party(code: int) -> bool:
    """True for the 60x codes that report a failed call to a third-party service."""
    return int(code) in THIRD_PARTY_CODES


__all__ = [
    "HTTP_100_CONTINUE",
    "HTTP_101_SWITCHING_PROTOCOLS",
    "HTTP_102_PROCESSING",
    "HTTP_103_EARLY_HINTS",
    "HTTP_200_OK",
    "HTTP_201_CREATED",
    "HTTP_202_ACCEPTED",
    "HTTP_203_NON_AUTHORITATIVE_INFORMATION",
    "HTTP_204_NO_CONTENT",
    "HTTP_205_RESET_CONTENT",
    "HTTP_206_PARTIAL_CONTENT",
    "HTTP_207_MULTI_STATUS",
    "HTTP_208_ALREADY_REPORTED",
    "HTTP_226_IM_USED",
    "HTTP_300_MULTIPLE_CHOICES",
    "HTTP_301_MOVED_PERMANENTLY",
    "HTTP_302_FOUND",
    "HTTP_303_SEE_OTHER",
    "HTTP_304_NOT_MODIFIED",
    "HTTP_305_USE_PROXY",
    "HTTP_306_RESERVED",
    "HTTP_307_TEMPORARY_REDIRECT",
    "HTTP_308_PERMANENT_REDIRECT",
    "HTTP_400_BAD_REQUEST",
    "HTTP_401_UNAUTHORIZED",
    "HTTP_402_PAYMENT_REQUIRED",
    "HTTP_403_FORBIDDEN",
    "HTTP_404_NOT_FOUND",
    "HTTP_405_METHOD_NOT_ALLOWED",
    "HTTP_406_NOT_ACCEPTABLE",
    "HTTP_407_PROXY_AUTHENTICATION_REQUIRED",
    "HTTP_408_REQUEST_TIMEOUT",
    "HTTP_409_CONFLICT",
    "HTTP_410_GONE",
    "HTTP_411_LENGTH_REQUIRED",
    "HTTP_412_PRECONDITION_FAILED",
    "HTTP_413_CONTENT_TOO_LARGE",
    "HTTP_413_PAYLOAD_TOO_LARGE",
    "HTTP_413_REQUEST_ENTITY_TOO_LARGE",
    "HTTP_414_REQUEST_URI_TOO_LONG",
    "HTTP_414_URI_TOO_LONG",
    "HTTP_415_UNSUPPORTED_MEDIA_TYPE",
    "HTTP_416_RANGE_NOT_SATISFIABLE",
    "HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE",
    "HTTP_417_EXPECTATION_FAILED",
    "HTTP_418_IM_A_TEAPOT",
    "HTTP_418_I_AM_A_TEAPOT",
    "HTTP_421_MISDIRECTED_REQUEST",
    "HTTP_422_UNPROCESSABLE_CONTENT",
    "HTTP_422_UNPROCESSABLE_ENTITY",
    "HTTP_423_LOCKED",
    "HTTP_424_FAILED_DEPENDENCY",
    "HTTP_425_TOO_EARLY",
    "HTTP_426_UPGRADE_REQUIRED",
    "HTTP_428_PRECONDITION_REQUIRED",
    "HTTP_429_TOO_MANY_REQUESTS",
    "HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE",
    "HTTP_451_UNAVAILABLE_FOR_LEGAL_REASONS",
    "HTTP_500_INTERNAL_SERVER_ERROR",
    "HTTP_501_NOT_IMPLEMENTED",
    "HTTP_502_BAD_GATEWAY",
    "HTTP_503_SERVICE_UNAVAILABLE",
    "HTTP_504_GATEWAY_TIMEOUT",
    "HTTP_505_HTTP_VERSION_NOT_SUPPORTED",
    "HTTP_506_VARIANT_ALSO_NEGOTIATES",
    "HTTP_507_INSUFFICIENT_STORAGE",
    "HTTP_508_LOOP_DETECTED",
    "HTTP_510_NOT_EXTENDED",
    "HTTP_511_NETWORK_AUTHENTICATION_REQUIRED",
    "HTTP_600_THIRD_PARTY_ERROR",
    "HTTP_601_THIRD_PARTY_STATUS_ERROR",
    "HTTP_602_THIRD_PARTY_DATA_ERROR",
    "HTTP_603_THIRD_PARTY_UNAVAILABLE_ERROR",
    "HTTP_604_THIRD_PARTY_TIMEOUT_ERROR",
    "HTTP_605_THIRD_PARTY_NETWORK_ERROR",
    "HTTP_605_THIRD_PARTY_NEWORK_ERROR",
    "HTTP_606_THIRD_PARTY_RETRY_ERROR",
    "THIRD_PARTY_CODES",
    "WS_1000_NORMAL_CLOSURE",
    "WS_1001_GOING_AWAY",
    "WS_1002_PROTOCOL_ERROR",
    "WS_1003_UNSUPPORTED_DATA",
    "WS_1005_NO_STATUS_RCVD",
    "WS_1006_ABNORMAL_CLOSURE",
    "WS_1007_INVALID_FRAME_PAYLOAD_DATA",
    "WS_1008_POLICY_VIOLATION",
    "WS_1009_MESSAGE_TOO_BIG",
    "WS_1010_MANDATORY_EXT",
    "WS_1011_INTERNAL_ERROR",
    "WS_1012_SERVICE_RESTART",
    "WS_1013_TRY_AGAIN_LATER",
    "WS_1014_BAD_GATEWAY",
    "WS_1015_TLS_HANDSHAKE",
    "describe",
    "is_third_party",
    "phrase",
]
