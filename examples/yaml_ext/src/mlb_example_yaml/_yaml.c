#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <yaml.h>

static PyObject *version(PyObject *self, PyObject *args)
{
    return PyUnicode_FromString(yaml_get_version_string());
}

/* Count the scalar tokens libyaml's scanner finds in a YAML document. */
static PyObject *count_scalars(PyObject *self, PyObject *args)
{
    const char *text;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "s#", &text, &size))
        return NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return PyErr_NoMemory();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, (size_t)size);
    long count = 0;
    for (;;) {
        yaml_token_t token;
        if (!yaml_parser_scan(&parser, &token)) {
            PyErr_Format(PyExc_ValueError, "invalid YAML: %s",
                         parser.problem ? parser.problem : "unknown error");
            yaml_parser_delete(&parser);
            return NULL;
        }
        int type = token.type;
        if (type == YAML_SCALAR_TOKEN)
            count++;
        yaml_token_delete(&token);
        if (type == YAML_STREAM_END_TOKEN)
            break;
    }
    yaml_parser_delete(&parser);
    return PyLong_FromLong(count);
}

static PyMethodDef methods[] = {
    {"version", version, METH_NOARGS, "libyaml's version string."},
    {"count_scalars", count_scalars, METH_VARARGS, "Number of scalars in a YAML text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_yaml", NULL, -1, methods};

PyMODINIT_FUNC PyInit__yaml(void) { return PyModule_Create(&module); }
