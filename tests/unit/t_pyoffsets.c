/*
 * preload/pyoffsets.h against python3.11's own headers (python3-dev):
 * the offsets kprof reads the interpreter's frames with
 * (preload/pystack.c) must be the interpreter's. Built against the
 * headers pkg-config names for python3; on another version than 3.11
 * the first test fails, saying so (pystack.c reads 3.11 only). Then, with
 * the interpreter embedded, preload/pylines.h's reading of the location
 * table against PyCode_Addr2Line, on every instruction of every code
 * object of some modules of the standard library.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <stddef.h>
#include <string.h>

#include "harness.h"
#include "pylines.h"
#include "pyoffsets.h"

TEST(version_is_3_11)
{
	CHECK_EQ_U(PY_MAJOR_VERSION * 100 + PY_MINOR_VERSION, 311);
}

TEST(frame_offsets)
{
	CHECK_EQ_U(offsetof(PyThreadState, cframe), PY311_TSTATE_CFRAME);
	CHECK_EQ_U(offsetof(_PyCFrame, current_frame),
		   PY311_CFRAME_CURRENT_FRAME);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, f_code), PY311_FRAME_F_CODE);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, previous),
		   PY311_FRAME_PREVIOUS);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, prev_instr),
		   PY311_FRAME_PREV_INSTR);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, is_entry),
		   PY311_FRAME_IS_ENTRY);
	CHECK_EQ_U(sizeof(((_PyInterpreterFrame *)0)->is_entry), 1);
}

TEST(code_offsets)
{
	CHECK_EQ_U(offsetof(PyObject, ob_type), 8);
	CHECK_EQ_U(offsetof(PyCodeObject, co_filename), PY311_CODE_CO_FILENAME);
	CHECK_EQ_U(offsetof(PyCodeObject, co_qualname), PY311_CODE_CO_QUALNAME);
	CHECK_EQ_U(offsetof(PyCodeObject, co_code_adaptive),
		   PY311_CODE_CO_CODE_ADAPTIVE);
}

TEST(string_layout)
{
	CHECK_EQ_U(offsetof(PyASCIIObject, length), PY311_ASCII_LENGTH);
	CHECK_EQ_U(offsetof(PyASCIIObject, state), PY311_ASCII_STATE);
	CHECK_EQ_U(sizeof(PyASCIIObject), PY311_ASCII_DATA);
	CHECK_EQ_U(offsetof(PyCompactUnicodeObject, utf8_length),
		   PY311_COMPACT_UTF8_LENGTH);
	CHECK_EQ_U(offsetof(PyCompactUnicodeObject, utf8), PY311_COMPACT_UTF8);
	PyASCIIObject a;
	unsigned w;
	memset(&a, 0, sizeof(a));
	a.state.compact = 1;
	memcpy(&w, &a.state, 4);
	CHECK_EQ_U(w, PY311_STATE_COMPACT);
	memset(&a, 0, sizeof(a));
	a.state.ascii = 1;
	memcpy(&w, &a.state, 4);
	CHECK_EQ_U(w, PY311_STATE_ASCII);
}

TEST(line_table_offsets)
{
	CHECK_EQ_U(offsetof(PyCodeObject, co_firstlineno),
		   PY311_CODE_CO_FIRSTLINENO);
	CHECK_EQ_U(sizeof(((PyCodeObject *)0)->co_firstlineno), 4);
	CHECK_EQ_U(offsetof(PyCodeObject, co_linetable),
		   PY311_CODE_CO_LINETABLE);
	CHECK_EQ_U(offsetof(PyVarObject, ob_size), PY311_BYTES_SIZE);
	CHECK_EQ_U(offsetof(PyBytesObject, ob_sval), PY311_BYTES_DATA);
}

/* Every code object of these modules' sources, nested ones too. */
static const char codes_py[] =
	"import importlib.util, types\n"
	"codes = []\n"
	"def walk(c):\n"
	"    codes.append(c)\n"
	"    for k in c.co_consts:\n"
	"        if isinstance(k, types.CodeType):\n"
	"            walk(k)\n"
	"for m in ('json.decoder', 'email.message', 'asyncio.base_events',\n"
	"          'argparse', 'sqlite3.dbapi2', 'decimal', 'typing'):\n"
	"    path = importlib.util.find_spec(m).origin\n"
	"    with open(path) as f:\n"
	"        walk(compile(f.read(), path, 'exec'))\n";

TEST(line_table_reader)
{
	Py_Initialize();
	REQUIRE(PyRun_SimpleString(codes_py) == 0);
	PyObject *main = PyImport_AddModule("__main__");
	PyObject *codes = PyObject_GetAttrString(main, "codes");
	REQUIRE(codes && PyList_Check(codes));
	Py_ssize_t ncodes = PyList_GET_SIZE(codes);
	long checked = 0, bad = 0;
	for (Py_ssize_t i = 0; i < ncodes; i++) {
		PyCodeObject *co = (PyCodeObject *)PyList_GET_ITEM(codes, i);
		const char *lt = PyBytes_AS_STRING(co->co_linetable);
		size_t len = (size_t)PyBytes_GET_SIZE(co->co_linetable);
		int units = (int)Py_SIZE(co);
		struct kp_pylines c;
		kp_pylines_init(&c, (const uint8_t *)lt, len, co->co_firstlineno);
		/* up, down, and once past the end */
		for (int pass = 0; pass < 2; pass++)
			for (int k = 0; k <= units; k++) {
				int off = 2 * (pass ? units - k : k);
				int want = PyCode_Addr2Line(co, off);
				int got = kp_pylines_at(&c, off);
				if (got != want && bad++ < 5)
					printf("#   %s:%d offset %d: %d, not %d\n",
					       PyUnicode_AsUTF8(co->co_filename),
					       co->co_firstlineno, off, got, want);
				checked++;
			}
	}
	printf("# %ld code objects, %ld offsets\n", (long)ncodes, checked);
	CHECK(ncodes > 500);
	CHECK_EQ_U(bad, 0);
	Py_DECREF(codes);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(version_is_3_11), T(frame_offsets),
			 T(code_offsets), T(string_layout), T(line_table_offsets),
			 T(line_table_reader));
}
