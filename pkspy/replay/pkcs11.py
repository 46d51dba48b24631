"""The replay program: a plan's steps made as live calls through PyKCS11's low-level wrapper.

``pkspy replay`` runs this module under pkcs11-spy (``pkspy.capture.run``), so
every live call lands in a redacted trace; the comparison is made from that
trace, not from here. This side only makes the calls, maps recorded handles
to live ones and writes down, as it goes, whether each step ran, its result,
and which live calls it made, in order (private JSON lines: results, never
data), so a module that kills the process leaves what happened up to there.

Handles: a recorded session is the live session opened at the same step; a
recorded object is the live object at the same place in the answer of the
same lookup (same template; where it found several, the one the trace
describes, see ``identity``), or made by the same create/generate step; a
recorded slot is ``--slot`` if given, else the live slot at the same place in
the same C_GetSlotList answer. PINs come from PKSPY_REPLAY_PIN /
PKSPY_REPLAY_SO_PIN, set by ``pkspy replay`` from the maintainer's input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from decoders import pkcs11 as names
from pkspy.model import Arg, Pkcs11Call
from pkspy.replay import plan as planning
from pkspy.replay.compare import objects
from pkspy.replay.identity import IDENTIFY_ROOM, identities

PIN_ENV = {"CKU_USER": "PKSPY_REPLAY_PIN", "CKU_SO": "PKSPY_REPLAY_SO_PIN",
           "CKU_CONTEXT_SPECIFIC": "PKSPY_REPLAY_PIN"}


class Unmapped(Exception):
    """A step that cannot be made as recorded (a handle with no live counterpart, no
    PIN, an Init not made): the message says why."""


CKR_BUFFER_TOO_SMALL = 0x150
OUT_ROOM = 16384  # bytes of room for an output: more than any RSA modulus

OPERATIONS = ("Sign", "Verify", "Encrypt", "Decrypt", "Digest")


def _operation(call: Pkcs11Call) -> str | None:
    """Sign for C_SignInit / C_Sign / C_SignUpdate / C_SignFinal, and so on."""
    fn = call.function or ""
    for op in OPERATIONS:
        if fn in (f"C_{op}Init", f"C_{op}", f"C_{op}Update", f"C_{op}Final"):
            return op
    return None


class Executor:
    def __init__(self, lib, ll, slot: int | None,
                 identity: dict[int, dict[int, bytes]] | None = None) -> None:
        self.identity = identity or {}
        self.no_init: dict[tuple[int, str], str] = {}  # (session, operation) -> its Init
        self.lib = lib
        self.ll = ll  # PyKCS11.LowLevel
        self.slot = slot
        self.sessions: dict[int, int] = {}
        self.objects: dict[int, int] = {}
        self.slots: dict[int, int] = {}
        self.lost: dict[int, str] = {}  # recorded object -> why it has no live one
        self.live: list[tuple[int | None, str]] = []  # (step index, function) per live call

    # -- handles -----------------------------------------------------------------------

    def _ulong(self, call: Pkcs11Call, name: str) -> int:
        a = call.arg(name, "in") or call.arg(name)
        if a is None or not isinstance(a.value, int):
            raise Unmapped(f"{name} not recorded")
        return a.value

    def session(self, call: Pkcs11Call):
        rec = self._ulong(call, "hSession")
        if rec not in self.sessions:
            raise Unmapped(f"session 0x{rec:x} was not opened in the replay")
        h = self.ll.CK_SESSION_HANDLE()
        h.assign(self.sessions[rec])
        return h

    def obj(self, call: Pkcs11Call, name: str):
        rec = self._ulong(call, name)
        if rec not in self.objects:
            why = self.lost.get(rec, "no replayed call found or made it")
            raise Unmapped(f"object 0x{rec:x} has no live counterpart: {why}")
        h = self.ll.CK_OBJECT_HANDLE()
        h.assign(self.objects[rec])
        return h

    def slot_of(self, call: Pkcs11Call) -> int:
        rec = self._ulong(call, "slotID")
        if self.slot is not None:
            return self.slot
        if rec in self.slots:
            return self.slots[rec]
        raise Unmapped(f"slot 0x{rec:x}: no C_GetSlotList answer to map it by (give --slot)")

    # -- operations whose Init did not run -----------------------------------------------

    def note_operation(self, call: Pkcs11Call, entry: dict) -> None:
        """Remember an operation's Init that was not made (its data calls are not made
        either: they would only fail with CKR_OPERATION_NOT_INITIALIZED)."""
        op = _operation(call)
        s = call.arg("hSession")
        if op is None or not call.function.endswith("Init") or s is None:
            return
        if entry.get("status") == "ran":
            self.no_init.pop((s.value, op), None)
        else:
            self.no_init[(s.value, op)] = f"#{call.seq} {call.function}"

    def check_operation(self, call: Pkcs11Call) -> None:
        op = _operation(call)
        s = call.arg("hSession")
        if op is None or call.function.endswith("Init") or s is None:
            return
        init = self.no_init.get((s.value, op))
        if init is not None:
            raise Unmapped(f"its {init} was not replayed")

    # -- building arguments ------------------------------------------------------------

    def template(self, arg: Arg | None):
        attrs = (arg.value if arg is not None else None) or []
        t = self.ll.ckattrlist(len(attrs))
        for i, a in enumerate(attrs):
            if a.type is None:
                raise Unmapped(f"{a.name}: unknown attribute type")
            v = a.value
            if isinstance(v, bool):
                t[i].SetBool(a.type, v)
            elif isinstance(v, str):
                n = names.value(v)
                if n is None:
                    raise Unmapped(f"{a.name}: value {v!r} not understood")
                t[i].SetNum(a.type, n)
            elif (isinstance(v, bytes) and len(v) in (4, 8)
                  and names.ATTRIBUTE_KINDS.get(a.type) == "ulong"):
                # a CK_ULONG as the recording platform laid it out: this one may differ
                t[i].SetNum(a.type, names.ulong_from_le(v))
            elif isinstance(v, bytes) and (not a.length or len(v) == a.length):
                t[i].SetBin(a.type, self.ll.ckbytelist(v))
            elif (v is None or v == b"") and a.length and a.length > 0:
                t[i].SetBin(a.type, self.ll.ckbytelist(bytes(a.length)))  # a buffer to fill
            elif v is None:
                t[i].SetType(a.type)  # NULL: a length query
            else:
                raise Unmapped(f"{a.name}: value not in the trace")
        return t

    def mechanism(self, call: Pkcs11Call):
        arg = call.arg("pMechanism")
        m = arg.value  # type: ignore[union-attr]  (the plan checked it)
        rebuilt = planning.structured(m) if m.params else None
        if rebuilt is not None:
            kind, values, data = rebuilt
            return getattr(self, "_" + kind.lower())(m.type, values, data)
        mech = self.ll.CK_MECHANISM()
        mech.mechanism = m.type
        if m.params and isinstance(m.params[0].value, bytes) and m.params[0].value:
            param = self.ll.ckbytelist(m.params[0].value)
            mech.pParameter = param
            mech.ulParameterLen = len(m.params[0].value)
            self._keep = param  # the mechanism points into it
        return mech

    def _rsa_pss(self, mechanism: int, values: list[int], data: dict):
        import PyKCS11

        wrapper = PyKCS11.RSA_PSS_Mechanism(mechanism, *values)
        self._keep = wrapper  # the native mechanism points into it
        return wrapper.to_native()

    def _rsa_oaep(self, mechanism: int, values: list[int], data: dict):
        # built here, not with PyKCS11's RSAOAEPMechanism, which always sets source to
        # CKZ_DATA_SPECIFIED: the recorded source is passed as it was, right or wrong
        param = self.ll.CK_RSA_PKCS_OAEP_PARAMS()
        param.hashAlg, param.mgf, param.source = values
        label = data.get("pSourceData")
        source = self.ll.ckbytelist(label) if label else None
        param.pSourceData = source
        param.ulSourceDataLen = len(label) if label else 0
        mech = self.ll.CK_MECHANISM()
        mech.mechanism = mechanism
        mech.pParameter = param
        mech.ulParameterLen = self.ll.CK_RSA_PKCS_OAEP_PARAMS_LENGTH
        self._keep = (param, source)  # the native mechanism points into them
        return mech

    def data(self, call: Pkcs11Call, name: str):
        a = call.arg(name, "in")
        if a is None or not isinstance(a.value, bytes):
            raise Unmapped(f"{name} not in the trace")
        return self.ll.ckbytelist(a.value)

    def out_buffer(self, call: Pkcs11Call, name: str):
        """NULL where the recorded call asked for the length, else a buffer. The trace
        shows what came back, not how much room the application gave (an RSA decryption
        wants room for the modulus before it knows the plaintext's length): give plenty,
        or, where the recorded answer was CKR_BUFFER_TOO_SMALL, less than it asked for."""
        a = call.arg(name, "out")
        if call.rv == CKR_BUFFER_TOO_SMALL:
            need = a.length if a is not None and a.length else 2
            return self.ll.ckbytelist(bytes(max(need - 1, 1)))
        if a is None or a.value is None or not a.length or a.length < 0:
            return self.ll.ckbytelist()
        return self.ll.ckbytelist(bytes(max(a.length, OUT_ROOM)))

    # -- one step ------------------------------------------------------------------------

    def run(self, index: int, step: planning.Step, merged_before: bool) -> int:
        call = step.call
        fn = call.function or ""
        handler = getattr(self, "do_" + fn[2:], None)
        if handler is None:
            raise Unmapped(f"{fn} has no replay handler")
        at = len(self.live)  # the step's own call comes before any extra call it made
        rv = handler(call)
        made = [(index, fn)]
        if fn == "C_GetSlotList" and rv == 0:  # the wrapper asked for the count first
            made.insert(0, (index - 1 if merged_before else None, fn))
        self.live[at:at] = made
        return rv

    def do_Initialize(self, call):
        return self.lib.C_Initialize()

    def do_Finalize(self, call):
        return self.lib.C_Finalize()

    def do_GetInfo(self, call):
        return self.lib.C_GetInfo(self.ll.CK_INFO())

    def do_GetSlotList(self, call):
        present = self._ulong(call, "tokenPresent")
        out = self.ll.ckulonglist()
        rv = self.lib.C_GetSlotList(bool(present), out)
        rec = call.arg("pSlotList")
        if rv == 0 and rec is not None and isinstance(rec.value, list):
            for r, live in zip(rec.value, list(out), strict=False):
                self.slots.setdefault(r, int(live))
        return rv

    def do_GetSlotInfo(self, call):
        return self.lib.C_GetSlotInfo(self.slot_of(call), self.ll.CK_SLOT_INFO())

    def do_GetTokenInfo(self, call):
        return self.lib.C_GetTokenInfo(self.slot_of(call), self.ll.CK_TOKEN_INFO())

    def do_GetMechanismList(self, call):
        return self.lib.C_GetMechanismList(self.slot_of(call), self.ll.ckulonglist())

    def do_GetMechanismInfo(self, call):
        a = call.arg("type")
        mech = names.value(a.value) if a is not None and isinstance(a.value, str) else None
        if mech is None:
            raise Unmapped("mechanism type not understood")
        return self.lib.C_GetMechanismInfo(self.slot_of(call), mech,
                                           self.ll.CK_MECHANISM_INFO())

    def do_OpenSession(self, call):
        h = self.ll.CK_SESSION_HANDLE()
        rv = self.lib.C_OpenSession(self.slot_of(call), self._ulong(call, "flags"), h)
        rec = call.arg("*phSession", "out")
        if rv == 0 and rec is not None and isinstance(rec.value, int):
            self.sessions[rec.value] = h.value()
        return rv

    def do_CloseSession(self, call):
        return self.lib.C_CloseSession(self.session(call))

    def do_CloseAllSessions(self, call):
        return self.lib.C_CloseAllSessions(self.slot_of(call))

    def do_GetSessionInfo(self, call):
        return self.lib.C_GetSessionInfo(self.session(call), self.ll.CK_SESSION_INFO())

    def do_Login(self, call):
        user = planning._user_type(call)
        pin = os.environ.get(PIN_ENV.get(user, "PKSPY_REPLAY_PIN"))
        if pin is None:
            raise Unmapped(f"no PIN given for {user} (--pin-env / --so-pin-env, or a terminal)")
        user_type = names.value(user)
        if user_type is None:
            raise Unmapped(f"user type {user} not understood")
        return self.lib.C_Login(self.session(call), user_type, self.ll.ckbytelist(pin.encode()))

    def do_Logout(self, call):
        return self.lib.C_Logout(self.session(call))

    def do_FindObjectsInit(self, call):
        arg = call.arg("pTemplate", "in") or call.arg("pTemplate")
        return self.lib.C_FindObjectsInit(self.session(call), self.template(arg))

    def do_FindObjects(self, call):
        s = self.session(call)
        out = self.ll.ckulonglist(max(self._ulong(call, "ulMaxObjectCount"), 1))
        rv = self.lib.C_FindObjects(s, out)
        live = [int(h) for h in out] if rv == 0 else []
        rec = call.arg("phObject", "out")
        recorded = rec.value if rec is not None and isinstance(rec.value, list) else []
        for r, h in self._match(s, recorded, live).items():
            self.objects[r] = h
        for r in recorded[len(live):]:
            self.objects.pop(r, None)
            self.lost[r] = (f"the lookup #{call.seq} found {objects(len(live))} "
                            f"({objects(len(recorded))} recorded)")
        return rv

    def _match(self, session, recorded: list[int], live: list[int]) -> dict[int, int]:
        """Recorded handles -> live ones. Tokens list objects in their own order, so where
        a lookup found several, each recorded object takes the live one with the class, key
        type, id and label the trace showed for it (read with one extra call per object,
        which the replay trace shows as pkspy's own); the others go by position."""
        known = {r: self.identity[r] for r in recorded if r in self.identity}
        if len(live) < 2 or not known:
            return dict(zip(recorded, live, strict=False))
        types = sorted({t for ident in known.values() for t in ident})
        seen = {h: self._identify(session, h, types) for h in live}
        free, out = list(live), {}
        for r in recorded:
            ident = known.get(r)
            pick = next((h for h in free if ident and all(seen[h].get(t) == v
                                                          for t, v in ident.items())), None)
            if pick is not None:
                out[r] = pick
                free.remove(pick)
        for r in recorded:
            if r not in out and free:
                out[r] = free.pop(0)
        return out

    def _identify(self, session, handle: int, types: list[int]) -> dict[int, bytes]:
        t = self.ll.ckattrlist(len(types))
        for i, typ in enumerate(types):
            t[i].SetBin(typ, self.ll.ckbytelist(bytes(IDENTIFY_ROOM)))
        h = self.ll.CK_OBJECT_HANDLE()
        h.assign(handle)
        self.lib.C_GetAttributeValue(session, h, t)
        self.live.append((None, "C_GetAttributeValue"))
        return {typ: bytes(t[i].GetBin()) for i, typ in enumerate(types) if t[i].GetLen() > 0}

    def do_FindObjectsFinal(self, call):
        return self.lib.C_FindObjectsFinal(self.session(call))

    def do_GetAttributeValue(self, call):
        t = self.template(call.arg("pTemplate", "in"))
        return self.lib.C_GetAttributeValue(self.session(call), self.obj(call, "hObject"), t)

    def do_SetAttributeValue(self, call):
        t = self.template(call.arg("pTemplate", "in"))
        return self.lib.C_SetAttributeValue(self.session(call), self.obj(call, "hObject"), t)

    def do_DestroyObject(self, call):
        return self.lib.C_DestroyObject(self.session(call), self.obj(call, "hObject"))

    def _made(self, call: Pkcs11Call, name: str, handle, rv: int) -> None:
        rec = call.arg(name, "out")
        if rv == 0 and rec is not None and isinstance(rec.value, int):
            self.objects[rec.value] = handle.value()

    def do_CreateObject(self, call):
        h = self.ll.CK_OBJECT_HANDLE()
        rv = self.lib.C_CreateObject(self.session(call), self.template(call.arg("pTemplate")), h)
        self._made(call, "*phObject", h, rv)
        return rv

    def do_GenerateKey(self, call):
        h = self.ll.CK_OBJECT_HANDLE()
        rv = self.lib.C_GenerateKey(self.session(call), self.mechanism(call),
                                    self.template(call.arg("pTemplate")), h)
        self._made(call, "hKey", h, rv)
        return rv

    def do_GenerateKeyPair(self, call):
        pub, prv = self.ll.CK_OBJECT_HANDLE(), self.ll.CK_OBJECT_HANDLE()
        rv = self.lib.C_GenerateKeyPair(self.session(call), self.mechanism(call),
                                        self.template(call.arg("pPublicKeyTemplate")),
                                        self.template(call.arg("pPrivateKeyTemplate")), pub, prv)
        self._made(call, "hPublicKey", pub, rv)
        self._made(call, "hPrivateKey", prv, rv)
        return rv

    # operations: Init with the recorded mechanism and the mapped key, then the data calls
    def _init(self, fn: str, call):
        return getattr(self.lib, fn)(self.session(call), self.mechanism(call),
                                     self.obj(call, "hKey"))

    def do_SignInit(self, call):
        return self._init("C_SignInit", call)

    def do_VerifyInit(self, call):
        return self._init("C_VerifyInit", call)

    def do_EncryptInit(self, call):
        return self._init("C_EncryptInit", call)

    def do_DecryptInit(self, call):
        return self._init("C_DecryptInit", call)

    def do_DigestInit(self, call):
        return self.lib.C_DigestInit(self.session(call), self.mechanism(call))

    def _one_shot(self, fn: str, call, data: str, out: str):
        return getattr(self.lib, fn)(self.session(call), self.data(call, data),
                                     self.out_buffer(call, out))

    def do_Sign(self, call):
        return self._one_shot("C_Sign", call, "pData", "pSignature")

    def do_Digest(self, call):
        return self._one_shot("C_Digest", call, "pData", "pDigest")

    def do_Encrypt(self, call):
        return self._one_shot("C_Encrypt", call, "pData", "pEncryptedData")

    def do_Decrypt(self, call):
        return self._one_shot("C_Decrypt", call, "pEncryptedData", "pData")

    def do_EncryptUpdate(self, call):
        return self._one_shot("C_EncryptUpdate", call, "pPart", "pEncryptedPart")

    def do_DecryptUpdate(self, call):
        return self._one_shot("C_DecryptUpdate", call, "pEncryptedPart", "pPart")

    def do_Verify(self, call):
        return self.lib.C_Verify(self.session(call), self.data(call, "pData"),
                                 self.data(call, "pSignature"))

    def do_SignUpdate(self, call):
        return self.lib.C_SignUpdate(self.session(call), self.data(call, "pPart"))

    def do_VerifyUpdate(self, call):
        return self.lib.C_VerifyUpdate(self.session(call), self.data(call, "pPart"))

    def do_DigestUpdate(self, call):
        return self.lib.C_DigestUpdate(self.session(call), self.data(call, "pPart"))

    def do_SignFinal(self, call):
        return self.lib.C_SignFinal(self.session(call), self.out_buffer(call, "pSignature"))

    def do_DigestFinal(self, call):
        return self.lib.C_DigestFinal(self.session(call), self.out_buffer(call, "pDigest"))

    def do_EncryptFinal(self, call):
        return self.lib.C_EncryptFinal(self.session(call),
                                       self.out_buffer(call, "pLastEncryptedPart"))

    def do_DecryptFinal(self, call):
        return self.lib.C_DecryptFinal(self.session(call), self.out_buffer(call, "pLastPart"))

    def do_VerifyFinal(self, call):
        return self.lib.C_VerifyFinal(self.session(call), self.data(call, "pSignature"))

    def do_GenerateRandom(self, call):
        a = call.arg("RandomData", "out")  # its length is the request: exactly that much
        size = a.length if a is not None and a.length and a.length > 0 else 0
        return self.lib.C_GenerateRandom(self.session(call), self.ll.ckbytelist(bytes(size)))


def execute(the_plan: planning.Plan, module: str, slot: int | None, emit) -> bool:
    """Make the plan's calls against ``module``, telling ``emit`` as it goes (so a module
    that kills the process leaves what happened up to the call that did): {"begin": i}
    before a step's call, {"step": entry, "live": [...]} after it, the live calls made
    since the last line. True when the recording's own C_Finalize ended the run."""
    from PyKCS11 import LowLevel

    lib = LowLevel.CPKCS11Lib()
    ex = Executor(lib, LowLevel, slot, identities(the_plan.steps))
    # Load makes C_GetFunctionList and C_Initialize (asking for CKF_OS_LOCKING_OK), the first
    # live calls: the first recorded C_Initialize is compared with that one; a later one is
    # made again.
    first_init = next((i for i, s in enumerate(the_plan.steps)
                       if s.action == planning.RUN and s.call.function == "C_Initialize"), None)
    load_rv = lib.Load(module)
    load_rv = 0 if load_rv is True else (-1 if load_rv is False else int(load_rv))
    if load_rv == 0:
        ex.live.append((first_init, "C_Initialize"))
    sent = 0
    last: dict = {}

    def done(entry: dict) -> None:
        nonlocal sent
        emit({"step": entry, "live": ex.live[sent:]})
        sent = len(ex.live)

    for i, step in enumerate(the_plan.steps):
        fn = step.call.function
        entry: dict = {"index": i, "status": "skipped", "reason": step.reason}
        last = entry
        if step.action != planning.RUN:
            entry["status"] = step.action
            ex.note_operation(step.call, entry)
        elif i == first_init:
            entry.update(status="ran" if load_rv == 0 else "skipped", rv=load_rv,
                         reason=None if load_rv == 0 else f"the module did not load ({load_rv})")
        elif load_rv != 0:
            entry["reason"] = f"the module did not load (rv {load_rv})"
        elif step.merged:
            entry.update(status="merged", reason="PyKCS11 makes it inside the next step's call")
        else:
            emit({"begin": i})
            try:
                ex.check_operation(step.call)
                rv = int(ex.run(i, step, i > 0 and the_plan.steps[i - 1].merged)) & 0xFFFFFFFF
            except Unmapped as e:
                entry["reason"] = str(e)
            else:
                entry.update(status="ran", rv=rv, reason=None)
                if i > 0 and the_plan.steps[i - 1].merged and fn == "C_GetSlotList":
                    emit({"step": {"index": i - 1, "status": "ran", "rv": rv}, "live": []})
            ex.note_operation(step.call, entry)
        done(entry)
    finalized = bool(ex.live) and ex.live[-1][1] == "C_Finalize" and last.get("rv") == 0
    if not finalized:
        lib.Unload()  # finalizes: the recording may have stopped before its C_Finalize
        done({"index": -1, "status": "unload"})  # the unload's C_Finalize, nobody's step
    return finalized


def read_results(path: str) -> dict:
    """The replay program's lines as {"steps": [...], "live": [...], "crashed": index}."""
    steps: dict[int, dict] = {}
    live: list = []
    begun = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            if "begin" in item:
                begun = item["begin"]
            elif "step" in item:
                entry = item["step"]
                if entry["index"] >= 0:
                    steps[entry["index"]] = {**steps.get(entry["index"], {}), **entry}
                    if entry["index"] == begun:
                        begun = None
                live += [tuple(x) for x in item["live"]]
            elif "error" in item:
                return {"error": item["error"]}
    return {"steps": [steps[i] for i in sorted(steps)], "live": live, "crashed": begun}


def main(argv: list[str] | None = None) -> int:
    """The program ``pkspy replay`` runs under the spy; writes its results to --results."""
    p = argparse.ArgumentParser(prog="pkspy-replay")
    p.add_argument("--module", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--process", type=int)
    p.add_argument("--until", type=int)
    p.add_argument("--slot", type=int)
    p.add_argument("--allow-changes", action="store_true")
    p.add_argument("--results", required=True)
    a = p.parse_args(argv)
    from pkspy.capture.streams import open_private
    from pkspy.pipeline import open_events

    _fmt, events = open_events(a.trace)
    the_plan = planning.build(events, a.process, a.until, a.allow_changes)
    with open_private(a.results) as f:
        def emit(item: dict) -> None:
            f.write(json.dumps(item) + "\n")
            f.flush()

        try:
            finalized = execute(the_plan, a.module, a.slot, emit)
        except Exception as e:  # the wrapper itself failed: say so, in the results
            emit({"error": f"{type(e).__name__}: {e}"})
            return 1
    if finalized:
        # PyKCS11 would finalize again on unload, a call the user never made; the spy has
        # flushed every record (it flushes on each result), so leave without unloading.
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
