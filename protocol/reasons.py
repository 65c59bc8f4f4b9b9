"""The fixed list of decision reasons, each with a short text for the visitor.

A reason is `actionable` when the visitor can do something about it (come back at 14:00, go to the
exit first, look at the camera). Where several reasons apply, `protocol.rules` names, in this order:
1. a *final* reason: the credential can never pass here (forged, revoked, used up, expired): telling
   such a visitor to come back later would be a lie;
2. an *actionable* reason;
3. any other reason (wrong zone, wrong day: the visitor cannot change it at this gate).
Within each group the order of `Reason` below decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Reason(StrEnum):
    OK = "ok"
    FREE_PASSAGE = "free_passage"
    EMERGENCY = "emergency"
    # final: this credential will never pass
    NOT_A_CODE = "not_a_code"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_RETIRED = "key_retired"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    NO_BOOKING = "no_booking"
    REVOKED = "revoked"
    REFUNDED = "refunded"
    PASS_LOST = "pass_lost"
    PASS_SUSPENDED = "pass_suspended"
    EXPIRED = "expired"
    SLOT_MISSED = "slot_missed"
    USED_UP = "used_up"
    # actionable: the visitor can do something now or later
    GATE_LOCKED = "gate_locked"
    TOO_EARLY = "too_early"
    CLOSED = "closed"
    EXIT_FIRST = "exit_first"
    TOO_SOON = "too_soon"
    ZONE_FULL = "zone_full"
    LOOK_AT_CAMERA = "look_at_camera"
    FINGER_NEEDED = "finger_needed"
    # neither final nor actionable at this gate
    NOT_SAME_PERSON = "not_same_person"
    WRONG_ZONE = "wrong_zone"
    WRONG_DAY = "wrong_day"
    WRONG_DIRECTION = "wrong_direction"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    CONTROLLER_FAULT = "controller_fault"  # the gate cannot drive its turnstile: a fault, not the visitor's


FINAL = frozenset({
    Reason.NOT_A_CODE, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY, Reason.KEY_RETIRED,
    Reason.UNKNOWN_CREDENTIAL, Reason.NO_BOOKING, Reason.REVOKED, Reason.REFUNDED, Reason.PASS_LOST,
    Reason.PASS_SUSPENDED, Reason.EXPIRED, Reason.SLOT_MISSED, Reason.USED_UP,
})
ACTIONABLE = frozenset({
    Reason.GATE_LOCKED, Reason.TOO_EARLY, Reason.CLOSED, Reason.EXIT_FIRST, Reason.TOO_SOON,
    Reason.ZONE_FULL, Reason.LOOK_AT_CAMERA, Reason.FINGER_NEEDED,
})
GRANTING = frozenset({Reason.OK, Reason.FREE_PASSAGE, Reason.EMERGENCY})
_ORDER = {r: i for i, r in enumerate(Reason)}


def rank(reason: Reason) -> tuple[int, int]:
    """Sort key: the reason to name first sorts lowest."""
    group = 0 if reason in FINAL else 1 if reason in ACTIONABLE else 2
    return group, _ORDER[reason]


@dataclass(frozen=True)
class Text:
    en: str
    zh: str
    en_no_time: str = ""  # for texts with {at}, when no time is known (a report, a log)
    zh_no_time: str = ""


TEXTS: dict[Reason, Text] = {
    Reason.OK: Text("Welcome", "欢迎光临"),
    Reason.FREE_PASSAGE: Text("Free passage", "自由通行"),
    Reason.EMERGENCY: Text("Emergency: gates open", "紧急状态：闸机已打开"),
    Reason.NOT_A_CODE: Text("This is not a ticket code", "无效的票码"),
    Reason.BAD_SIGNATURE: Text("Ticket code not valid", "票码校验失败"),
    Reason.UNKNOWN_KEY: Text("Ticket code not valid here", "票码不适用于本景区"),
    Reason.KEY_RETIRED: Text("Ticket code no longer valid, please see staff", "票码已失效，请咨询工作人员"),
    Reason.UNKNOWN_CREDENTIAL: Text("Not recognised, please see staff", "无法识别，请咨询工作人员"),
    Reason.NO_BOOKING: Text("No booking for this ID card today", "该身份证今日无预约"),
    Reason.REVOKED: Text("Ticket cancelled", "门票已作废"),
    Reason.REFUNDED: Text("Ticket refunded", "门票已退"),
    Reason.PASS_LOST: Text("Card reported lost, please see staff", "此卡已挂失，请咨询工作人员"),
    Reason.PASS_SUSPENDED: Text("Pass suspended, please see staff", "年卡已暂停，请咨询工作人员"),
    Reason.EXPIRED: Text("Ticket expired", "门票已过期"),
    Reason.SLOT_MISSED: Text("Your time slot has passed", "您的预约时段已过"),
    Reason.USED_UP: Text("Ticket already used", "门票已使用"),
    Reason.GATE_LOCKED: Text("Gate closed, please use another gate", "本通道已关闭，请走其他通道"),
    Reason.TOO_EARLY: Text("Please come back at {at}", "请于{at}后再来",
                           "Too early, please come back later", "时间未到，请稍后再来"),
    Reason.CLOSED: Text("Closed now, opens at {at}", "现在闭园，{at}开放", "Closed now", "现在闭园"),
    Reason.EXIT_FIRST: Text("Please exit first", "请先出园再入园"),
    Reason.TOO_SOON: Text("Please wait until {at}", "请于{at}后再入园",
                          "Too soon after the last entry", "距上次入园时间过短"),
    Reason.ZONE_FULL: Text("Area full, please wait", "区域已满，请稍候"),
    Reason.LOOK_AT_CAMERA: Text("Please look at the camera", "请正对摄像头"),
    Reason.FINGER_NEEDED: Text("Please place your finger", "请按指纹"),
    Reason.NOT_SAME_PERSON: Text("Ticket belongs to another person", "人证不符"),
    Reason.WRONG_ZONE: Text("Ticket not valid for this area", "门票不适用于此区域"),
    Reason.WRONG_DAY: Text("Ticket not valid today", "门票今日无效"),
    Reason.WRONG_DIRECTION: Text("Wrong direction", "方向错误"),
    Reason.CLAIMED_ELSEWHERE: Text("Ticket just used at another gate", "门票刚在其他闸机使用"),
    Reason.CONTROLLER_FAULT: Text("Gate fault, please see staff", "闸机故障，请联系工作人员"),
}


def visitor_text(reason: Reason | str, language: str = "zh", at: datetime | None = None) -> str:
    """The words the gate shows and speaks; `at` fills in 'come back at ...' (site local time)."""
    text = TEXTS[Reason(reason)]
    zh = language.startswith("zh")
    if at is None and text.en_no_time:
        return text.zh_no_time if zh else text.en_no_time
    words = text.zh if zh else text.en
    return words.format(at=at.strftime("%H:%M") if at else "")
