// dspx sandbox runner: Pyodide (CPython in WebAssembly) behind line-delimited JSON-RPC 2.0.
//
// The host (dspx_cli/sandbox/process.py) starts this script with read access to Pyodide's own
// files only. Once Pyodide is loaded, every permission is revoked, the Deno namespace and the
// console are hidden from Python (`import js` would reach them), and only the closures below can
// talk to the host. Each session gets its own globals dict; executes run one at a time.
//
// host -> runner: execute {session, code, variables, tools: [{name, params}], outputs},
//                 close_session {session}, shutdown (notifications have no id)
// runner -> host: ready (once loaded); each execute's result {output, stdout} or {final, stdout},
//                 or error {code, message, data: {type, args, stdout}}; tool_call {name, kwargs}
//                 requests, answered by the host with the same id.
// Args: the stdout cap (bytes per execute) and the longest line this may send.

import { loadPyodide } from "npm:pyodide@0.29.4/pyodide.mjs";

const OUTPUT_CAP = Number(Deno.args[0] ?? "1000000");
const MAX_LINE = Number(Deno.args[1] ?? "16000000");
const stdin = Deno.stdin;
const stdout = Deno.stdout;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const pyodide = await loadPyodide({
  // Pyodide's own stdout/stderr must never reach the protocol channel: print() during an execute
  // goes through the capped buffer set up in PRELUDE; anything else (os.write(1, ...)) is dropped.
  stdout: () => {},
  stderr: () => {},
  env: { HOME: "/home/pyodide" },
});

// Nothing beyond this point needs the host: no file, no network, no environment.
for (const name of ["read", "write", "net", "env", "run", "ffi", "sys", "import"]) {
  try {
    await Deno.permissions.revoke({ name });
  } catch (_) {
    // an unknown permission name on an older Deno: nothing was granted for it anyway
  }
}
const exit = Deno.exit;
delete globalThis.Deno;
for (const key of Object.keys(console)) console[key] = () => {};

function send(message) {
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  let offset = 0;
  while (offset < bytes.length) offset += stdout.writeSync(bytes.subarray(offset));
}

// Line reader over stdin. The host is trusted, but a line past STDIN_CAP still ends the process
// rather than growing the heap without bound. Chunks are joined once per line, not per read.
const STDIN_CAP = 1 << 30;
let rest = new Uint8Array(0);
async function readLine() {
  const parts = [];
  let size = 0;
  let chunk = rest;
  while (true) {
    const nl = chunk.indexOf(10);
    if (nl >= 0) {
      parts.push(chunk.subarray(0, nl));
      rest = chunk.slice(nl + 1);
      const line = new Uint8Array(size + nl);
      let offset = 0;
      for (const part of parts) {
        line.set(part, offset);
        offset += part.length;
      }
      return decoder.decode(line);
    }
    parts.push(chunk);
    size += chunk.length;
    if (size > STDIN_CAP) exit(3);
    const buf = new Uint8Array(1 << 16);
    const n = await stdin.read(buf);
    if (n === null) return null;
    chunk = buf.subarray(0, n);
  }
}

let toolCounter = 0;
// Called from Python (through run_sync) while an execute is running: ask the host, wait for its
// answer. Anything but a well-formed answer with our id is an error the Python code sees.
async function callTool(name, kwargsJson) {
  const id = `tool-${++toolCounter}`;
  send({ jsonrpc: "2.0", id, method: "tool_call", params: { name, kwargs: JSON.parse(kwargsJson) } });
  const line = await readLine();
  if (line === null) exit(0);
  let reply;
  try {
    reply = JSON.parse(line);
  } catch (_) {
    return JSON.stringify({ error: "RuntimeError", message: "malformed tool reply" });
  }
  if (reply.id !== id) return JSON.stringify({ error: "RuntimeError", message: "tool reply out of order" });
  if (reply.error) {
    const type = reply.error.data?.type ?? "RuntimeError";
    return JSON.stringify({ error: String(type), message: String(reply.error.message ?? "") });
  }
  return JSON.stringify({ value: reply.result });
}

const PRELUDE = `
import builtins, io, json, sys

class _DspxFinal(BaseException):
    """Raised by SUBMIT: not an Exception, so \`except Exception\` in the code cannot swallow it."""

class _DspxOutputOverrun(BaseException):
    pass

class _DspxStdout(io.TextIOBase):
    def __init__(self, cap):
        self.parts, self.size, self.cap, self.overrun = [], 0, cap, False
    def writable(self):
        return True
    def write(self, text):
        text = str(text)
        room = self.cap - self.size
        # A character is at least one byte: only text shorter than the room left is measured.
        size = len(text.encode("utf-8", "surrogatepass")) if len(text) <= room else room + 1
        if size > room:
            kept = text[:room].encode("utf-8", "surrogatepass")[:room]
            self.parts.append(kept.decode("utf-8", "ignore"))
            self.size = self.cap
            self.overrun = True
            raise _DspxOutputOverrun()
        self.parts.append(text)
        self.size += size
        return len(text)
    def getvalue(self):
        return "".join(self.parts)

def _dspx_make_submit(outputs):
    # Without declared outputs, DSPy's one-argument SUBMIT(x) -> {"output": x}; keyword arguments
    # are taken as the fields. With outputs, SUBMIT(a, b) binds them by position, as DSPy's typed one.
    def SUBMIT(*args, **kwargs):
        if not outputs:
            if kwargs and not args:
                raise _DspxFinal(kwargs)
            if len(args) == 1 and not kwargs:
                raise _DspxFinal({"output": args[0]})
            raise TypeError("SUBMIT() takes one positional argument or keyword arguments")
        if len(args) > len(outputs):
            raise TypeError(f"SUBMIT() takes {len(outputs)} positional arguments but {len(args)} were given")
        values = dict(zip(outputs, args))
        for name, value in kwargs.items():
            if name not in outputs:
                raise TypeError(f"SUBMIT() got an unexpected keyword argument '{name}'")
            if name in values:
                raise TypeError(f"SUBMIT() got multiple values for argument '{name}'")
            values[name] = value
        missing = [name for name in outputs if name not in values]
        if missing:
            raise TypeError(f"SUBMIT() missing required argument: '{missing[0]}'")
        raise _DspxFinal({name: values[name] for name in outputs})
    return SUBMIT

def _dspx_make_tool(name, params):
    from pyodide.ffi import run_sync
    def tool(*args, **kwargs):
        if len(args) > len(params):
            raise TypeError(f"{name}() takes {len(params)} positional arguments but {len(args)} were given")
        for param, value in zip(params, args):
            if param in kwargs:
                raise TypeError(f"{name}() got multiple values for argument '{param}'")
            kwargs[param] = value
        reply = json.loads(run_sync(_dspx_call_tool(name, json.dumps(kwargs, default=str))))
        if "error" in reply:
            # DSPy's wording: a tool's failure reaches the code as RuntimeError("<Type>: <message>").
            raise RuntimeError(f"{reply['error']}: {reply['message']}")
        return reply["value"]
    tool.__name__ = name
    return tool

def _dspx_json(value, limit):
    # The result travels as one JSON line: past \`limit\` it is refused here, before JS copies it.
    try:
        text = json.dumps(value, default=repr, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        text = json.dumps(repr(value))
    return text if len(text) <= limit else None

# Exit requests become ordinary errors: Pyodide would end the whole process on SystemExit.
_DspxSystemExit = type("SystemExit", (Exception,), {})
_DspxKeyboardInterrupt = type("KeyboardInterrupt", (Exception,), {})
# Interpreter-wide state one session's code could break for the others on the process: put back
# after every execute (module attributes are not; see dspx_cli/sandbox/pool.py).
_DSPX_BUILTINS = dict(builtins.__dict__)
_DSPX_RECURSION = sys.getrecursionlimit()

def _dspx_restore(_len=len, _any=any, _get=sys.getrecursionlimit, _set=sys.setrecursionlimit):
    # Bound at definition: the code may have replaced the builtins and sys functions this uses.
    if _get() != _DSPX_RECURSION:
        _set(_DSPX_RECURSION)
    current = builtins.__dict__
    if _len(current) != _len(_DSPX_BUILTINS) or _any(current.get(k) is not v for k, v in _DSPX_BUILTINS.items()):
        current.clear()
        current.update(_DSPX_BUILTINS)

async def _dspx_run(code, ns, limit):
    # Runs in Python end to end: the last expression's value crosses to JS only as bounded JSON.
    from pyodide.code import eval_code_async
    try:
        try:
            result = await eval_code_async(code, ns)
        except SystemExit as e:
            raise _DspxSystemExit(*e.args) from None
        except KeyboardInterrupt as e:
            raise _DspxKeyboardInterrupt(*e.args) from None
    finally:
        _dspx_restore()
    if result is None:
        return None
    text = _dspx_json(result, limit)
    if text is None:
        raise _DspxOutputOverrun()
    return text

def _dspx_namespace(tools, outputs):
    ns = {"__name__": "__main__", "__builtins__": builtins, "SUBMIT": _dspx_make_submit(list(outputs))}
    for name, params in tools:
        ns[name] = _dspx_make_tool(name, params)
    return ns
`;
pyodide.runPython(PRELUDE);
pyodide.globals.set("_dspx_call_tool", callTool);
const py = (name) => pyodide.globals.get(name);
const newStdout = py("_DspxStdout");
const newNamespace = py("_dspx_namespace");
const sys = pyodide.pyimport("sys");
const jsonDumps = py("_dspx_json");
const setVariables = pyodide.runPython("lambda ns, text: ns.update(json.loads(text))");
const argsOf = pyodide.runPython("lambda e: json.dumps([a if isinstance(a, (str, int, float, bool, type(None))) else repr(a) for a in e.args])");

const driver = pyodide.toPy({ _dspx_run: py("_dspx_run"), limit: MAX_LINE });
const sessions = new Map();

async function execute(id, params) {
  const session = String(params.session ?? "");
  let ns = sessions.get(session);
  if (!ns) {
    const tools = (params.tools ?? []).map((t) => [String(t.name), (t.params ?? []).map(String)]);
    const outputs = (params.outputs ?? []).map(String);
    ns = newNamespace(pyodide.toPy(tools), pyodide.toPy(outputs));
    sessions.set(session, ns);
  }
  if (params.variables && Object.keys(params.variables).length) {
    setVariables(ns, JSON.stringify(params.variables));
  }
  const out = newStdout(OUTPUT_CAP);
  const err = newStdout(OUTPUT_CAP);
  // Python's stderr stays redirected until its error has become a JS one: Pyodide then writes the
  // traceback there and leaves the message empty, as in DSPy ("Invalid Python syntax. message: ").
  const saved = [sys.stdout, sys.stderr, sys.stdin];
  sys.stdout = out;
  sys.stderr = err;
  let reply;
  try {
    driver.set("code", String(params.code ?? ""));
    driver.set("ns", ns);
    const text = await pyodide.runPythonAsync("await _dspx_run(code, ns, limit)", { globals: driver });
    const printed = out.getvalue();
    const output = text === undefined || text === null ? printed : JSON.parse(text);
    reply = { result: { output, stdout: printed } };
  } catch (error) {
    const type = error?.type ?? "Error";
    const printed = out.getvalue();
    if (type === "_DspxFinal") {
      const exc = sys.last_exc ?? null;
      const text = exc ? jsonDumps(exc.args.get(0), MAX_LINE) : "null";
      reply = text === undefined || text === null
        ? { error: { code: -32010, message: "output", data: { type: "OutputLimitError", stdout: printed } } }
        : { result: { final: JSON.parse(text), stdout: printed } };
    } else if (type === "_DspxOutputOverrun") {
      reply = { error: { code: -32010, message: "output", data: { type: "OutputLimitError", stdout: printed } } };
    } else {
      const exc = sys.last_exc ?? null;
      const args = type === "SyntaxError" || !exc ? [] : JSON.parse(argsOf(exc));
      const message = String(error?.message ?? "").trim();
      const code = type === "SyntaxError" ? -32000 : -32001;
      reply = { error: { code, message, data: { type, args, stdout: printed } } };
    }
  } finally {
    driver.set("code", "");
    driver.set("ns", null);
    sys.stdout = saved[0];
    sys.stderr = saved[1];
    sys.stdin = saved[2];
    sys.last_exc = null;
    out.destroy();
    err.destroy();
  }
  let line = JSON.stringify({ jsonrpc: "2.0", id, ...reply });
  if (line.length > MAX_LINE) {
    line = JSON.stringify({
      jsonrpc: "2.0",
      id,
      error: { code: -32010, message: "result", data: { type: "OutputLimitError", stdout: "" } },
    });
  }
  const bytes = encoder.encode(line + "\n");
  let offset = 0;
  while (offset < bytes.length) offset += stdout.writeSync(bytes.subarray(offset));
}

send({ jsonrpc: "2.0", method: "ready", params: { pyodide: pyodide.version } });

while (true) {
  const line = await readLine();
  if (line === null) break;
  let message;
  try {
    message = JSON.parse(line);
  } catch (_) {
    send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } });
    continue;
  }
  const { id, method, params } = message ?? {};
  if (method === "shutdown") break;
  if (method === "execute") {
    await execute(id, params ?? {});
  } else if (method === "close_session") {
    const ns = sessions.get(String(params?.session ?? ""));
    if (ns) {
      ns.destroy();
      sessions.delete(String(params.session));
    }
    if (id !== undefined) send({ jsonrpc: "2.0", id, result: null });
  } else if (id !== undefined) {
    send({ jsonrpc: "2.0", id, error: { code: -32601, message: `unknown method ${method}` } });
  }
}
exit(0);
