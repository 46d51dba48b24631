"""The recorded calls of one process, as a replay plan: what runs, what is skipped and why.

A step is one recorded PKCS#11 call. It runs when pkspy can make the same call
from what the (redacted) trace holds; otherwise it is skipped with a reason,
never guessed: a redacted secret (a PIN other than the one the maintainer
gives, key material, a plaintext), a mechanism parameter that is not a plain
byte string, a callback, a record torn by threads. Calls that change the token
are refused unless changes were allowed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pkspy.model import Arg, Mechanism, Pkcs11Call, ProcessStart, Redacted

RUN, SKIP, REFUSE = "run", "skip", "refuse"

# What the replayer can call, through PyKCS11's low-level wrapper (one C call each).
SUPPORTED = frozenset({
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetSlotList", "C_GetSlotInfo",
    "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_OpenSession",
    "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_Login", "C_Logout",
    "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_GetAttributeValue",
    "C_SetAttributeValue", "C_CreateObject", "C_DestroyObject", "C_GenerateKey",
    "C_GenerateKeyPair", "C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestFinal",
    "C_SignInit", "C_Sign", "C_SignUpdate", "C_SignFinal", "C_VerifyInit", "C_Verify",
    "C_VerifyUpdate", "C_VerifyFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate",
    "C_EncryptFinal", "C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal",
    "C_GenerateRandom",
})
# Made by the library loader, not by the application: the replay's own load makes them.
LOADER = frozenset({"C_GetFunctionList", "C_GetInterface", "C_GetInterfaceList"})
# Calls that change what the token holds or who may use it.
CHANGES = {
    "C_InitToken": "initialises the token (erases every object)",
    "C_InitPIN": "sets the user PIN",
    "C_SetPIN": "changes a PIN",
    "C_DestroyObject": "destroys an object",
    "C_SetAttributeValue": "changes an object's attributes",
}
# Calls that would create objects; they change the token when the template says CKA_TOKEN.
CREATES = {"C_CreateObject": ("pTemplate",), "C_GenerateKey": ("pTemplate",),
           "C_GenerateKeyPair": ("pPublicKeyTemplate", "pPrivateKeyTemplate")}
# Failed logins are not replayed: the maintainer's PIN would succeed where the user's
# was wrong, and a wrong PIN on purpose would spend the token's retries.
PIN_FAILURES = {"CKR_PIN_INCORRECT", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE",
                "CKR_PIN_EXPIRED", "CKR_PIN_LOCKED"}
NULL_POINTERS = {"(nil)", "null", "0", "0x0", "00000000", "0000000000000000", "none"}
PIN_NEEDED = {"C_InitToken": "the SO PIN", "C_InitPIN": "the new user PIN",
              "C_SetPIN": "the old and new PINs"}


@dataclass
class Step:
    call: Pkcs11Call
    action: str  # RUN, SKIP or REFUSE
    reason: str | None = None
    change: str | None = None  # what it would change on the token
    merged: bool = False  # a size query PyKCS11 makes inside the next step's call

    @property
    def label(self) -> str:
        return f"#{self.call.seq} {self.call.function}"


@dataclass
class Plan:
    process: int
    module: str | None  # what the recorded process loaded
    steps: list[Step]
    processes: list[int]  # every process in the trace that made calls

    def logins(self) -> set[str]:
        """The user types of the logins that will run (CKU_USER, CKU_SO ...)."""
        out = set()
        for s in self.steps:
            if s.action == RUN and s.call.function == "C_Login":
                out.add(_user_type(s.call))
        return out

    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.change is not None]


def _user_type(call: Pkcs11Call) -> str:
    a = call.arg("userType")
    if a is None:
        return "CKU_USER"
    return a.value if isinstance(a.value, str) else f"0x{a.value:x}"


def _rv_name(call: Pkcs11Call) -> str:
    from decoders import pkcs11

    return pkcs11.ckr_name(call.rv) if call.rv is not None else ""


def secret_in(call: Pkcs11Call) -> str | None:
    """What redacted input the call would need, if any."""
    for arg in call.args:
        if arg.direction == "out":
            continue
        if isinstance(arg.value, Redacted) or (arg.secret and arg.kind == "buffer"):
            return f"{arg.name} ({arg.secret or arg.value.what})"
        if arg.kind == "template":
            for attr in arg.value or []:
                if isinstance(attr.value, Redacted):
                    return f"{attr.name} in {arg.name} ({attr.value.what})"
    return None


def mechanism_problem(mech: Arg | None) -> str | None:
    """Why a recorded mechanism cannot be rebuilt, or None: only a NULL parameter or
    one plain byte string (an IV, EC parameters) is rebuilt as recorded."""
    if mech is None or not isinstance(mech.value, Mechanism):
        return "no mechanism recorded"
    m = mech.value
    if m.type is None:
        return f"unknown mechanism {m.name}"
    params = m.params
    if not params:
        return None
    if len(params) == 1 and params[0].name == "pMechanism->pParameter":
        p = params[0]
        if (p.value is None and (p.length or 0) <= 0) or (
                isinstance(p.value, str) and p.value.strip().lower() in NULL_POINTERS):
            return None  # no parameter ("= NULL" from 0.24 on)
        if isinstance(p.value, bytes) and len(p.value) == (p.length or 0):
            return None
        return f"{m.name}: parameter not dumped in full"
    if structured(m) is not None:
        return None
    return f"{m.name}: a structured parameter ({params[0].name}) pkspy does not rebuild"


# Structured parameters rebuilt from the fields the spy prints, by the set of their names:
# what it is, and its CK_ULONG fields (names, or numbers) in the order the builder takes them;
# other fields are byte strings (NULL when the spy shows no dump).
STRUCTURED = {
    frozenset({"hashAlg", "mgf", "sLen"}): ("RSA_PSS", ("hashAlg", "mgf", "sLen")),
    frozenset({"hashAlg", "mgf", "source", "pSourceData"}):
        ("RSA_OAEP", ("hashAlg", "mgf", "source")),
}


def structured(m: Mechanism) -> tuple[str, list[int], dict[str, bytes | None]] | None:
    """(kind, CK_ULONG fields, byte-string fields) of a parameter pkspy rebuilds, or None."""
    from decoders import pkcs11

    fields = {p.name.removeprefix("pMechanism->pParameter->"): p for p in m.params}
    entry = STRUCTURED.get(frozenset(fields))
    if entry is None:
        return None
    kind, order = entry
    values = []
    for name in order:
        v = fields[name].value
        n = v if isinstance(v, int) else pkcs11.value(str(v).strip())
        if n is None:
            return None
        values.append(n)
    data: dict[str, bytes | None] = {}
    for name, p in fields.items():
        if name in order:
            continue
        if isinstance(p.value, bytes) and len(p.value) == (p.length or 0):
            data[name] = p.value
        elif p.value is None and (p.length or 0) <= 0:
            data[name] = None
        else:
            return None  # redacted, or cut short
    return kind, values, data


def _creates_token_object(call: Pkcs11Call) -> bool:
    for name in CREATES.get(call.function or "", ()):
        tmpl = call.arg(name, "in") or call.arg(name)
        for attr in (tmpl.value if tmpl is not None else None) or []:
            if attr.name == "CKA_TOKEN" and attr.value is True:
                return True
    return False


def _reason(call: Pkcs11Call) -> tuple[str, str | None]:
    """(action, reason) for one call, before the changes policy."""
    fn = call.function or ""
    if call.torn or call.incomplete or call.rv is None:
        return SKIP, "record torn or cut short in the trace"
    if fn in LOADER:
        return SKIP, "made by the library loader; the replay's own load makes it"
    if fn in PIN_NEEDED:
        return SKIP, f"needs {PIN_NEEDED[fn]}, redacted in the trace"
    if fn == "C_Login":
        if _rv_name(call) in PIN_FAILURES:
            return SKIP, f"the recorded login failed ({_rv_name(call)}): pkspy does not " \
                         "replay a wrong PIN"
        return RUN, None
    if fn == "C_Initialize":
        return RUN, None
    notify = call.arg("Notify")
    if notify is not None and str(notify.value).strip().lower() not in NULL_POINTERS:
        return SKIP, "the application passed a Notify callback, which pkspy cannot give"
    secret = secret_in(call)
    if secret is not None:
        return SKIP, f"needs {secret}, redacted in the trace"
    if fn not in SUPPORTED:
        return SKIP, f"{fn} is not replayed by pkspy"
    mech = call.arg("pMechanism")
    if mech is not None:
        problem = mechanism_problem(mech)
        if problem:
            return SKIP, problem
    return RUN, None


def build(events, process: int | None = None, until: int | None = None,
          allow_changes: bool = False) -> Plan:
    """The plan for one process of a trace (``process``: its 0-based index; default
    the first one that opened a session, else the first with calls)."""
    calls: dict[int, list[Pkcs11Call]] = {}
    modules: dict[int, str | None] = {}
    for e in events:
        if isinstance(e, ProcessStart):
            modules[e.process or 0] = e.module
        elif isinstance(e, Pkcs11Call) and e.function:
            calls.setdefault(e.process or 0, []).append(e)
    if not calls:
        raise PlanError("no PKCS#11 call in the trace (a pkcs11-spy trace is needed)")
    if process is None:
        process = next((p for p, cs in calls.items()
                        if any(c.function == "C_OpenSession" for c in cs)), min(calls))
    if process not in calls:
        raise PlanError(f"no process {process} in the trace; processes with calls: "
                        + ", ".join(map(str, sorted(calls))))
    steps = []
    for call in calls[process]:
        if until is not None and call.seq is not None and call.seq > until:
            break
        action, reason = _reason(call)
        step = Step(call=call, action=action, reason=reason)
        fn = call.function or ""
        if fn in CHANGES:
            step.change = CHANGES[fn]
        elif fn in CREATES and _creates_token_object(call):
            step.change = "creates a token object"
        if step.change and action == RUN and not allow_changes:
            step.action, step.reason = REFUSE, f"{step.change}: refused without --allow-changes"
        steps.append(step)
    _merge_slot_queries(steps)
    return Plan(process=process, module=modules.get(process), steps=steps,
                processes=sorted(calls))


def _merge_slot_queries(steps: list[Step]) -> None:
    """A recorded count query followed by the list is replayed by one wrapper call."""
    for a, b in itertools.pairwise(steps):
        fn = a.call.function
        if (fn in LISTS and b.call.function == fn and a.action == RUN and b.action == RUN
                and _listed(a.call) is None and _listed(b.call) is not None):
            a.merged = True


# Wrappers that return a whole list: PyKCS11 asks for the slot count itself, and asks for
# the mechanism list into a buffer of 1024 without asking for the count.
LISTS = {"C_GetSlotList": "pSlotList", "C_GetMechanismList": "pMechanismList"}


def _listed(call: Pkcs11Call):
    a = call.arg(LISTS[call.function or ""])
    return a.value if a is not None else None


class PlanError(Exception):
    """A trace that cannot be replayed at all: a one-line message."""
