// C++17 helpers that need libstdc++: exceptions, std::thread and string streams.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

// Throws std::invalid_argument unless the whole text is a decimal integer.
long long parse_int_or_throw(const std::string &text)
{
    std::istringstream in(text);
    long long value = 0;
    in >> value;
    if (in.fail() || !(in >> std::ws).eof()) {
        throw std::invalid_argument("not an integer: '" + text + "'");
    }
    return value;
}

// Sums values with one std::thread per half; each thread writes its own slot.
long long sum_in_threads(const std::vector<long long> &values)
{
    const std::size_t middle = values.size() / 2;
    long long partial[2] = {0, 0};
    auto work = [&values, &partial](int slot, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            partial[slot] += values[i];
        }
    };
    std::thread first(work, 0, std::size_t{0}, middle);
    try {
        std::thread second(work, 1, middle, values.size());
        second.join();
    } catch (...) {
        first.join();  // a joinable std::thread must not be destroyed
        throw;
    }
    first.join();
    return partial[0] + partial[1];
}

std::string format_point_text(double x, double y, int precision)
{
    if (precision < 0 || precision > 17) {
        throw std::out_of_range("precision must be between 0 and 17");
    }
    std::ostringstream out;
    out << std::fixed << std::setprecision(precision) << '(' << x << ", " << y << ')';
    return out.str();
}

}  // namespace

static PyObject *parse_int(PyObject *, PyObject *args)
{
    const char *text;
    if (!PyArg_ParseTuple(args, "s:parse_int", &text)) {
        return nullptr;
    }
    try {
        return PyLong_FromLongLong(parse_int_or_throw(text));
    } catch (const std::exception &error) {
        PyErr_SetString(PyExc_ValueError, error.what());
        return nullptr;
    }
}

static PyObject *parallel_sum(PyObject *, PyObject *args)
{
    PyObject *iterable;
    if (!PyArg_ParseTuple(args, "O:parallel_sum", &iterable)) {
        return nullptr;
    }
    PyObject *seq = PySequence_Fast(iterable, "parallel_sum expects an iterable of ints");
    if (seq == nullptr) {
        return nullptr;
    }
    std::vector<long long> values;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    values.reserve(static_cast<std::size_t>(count));
    for (Py_ssize_t i = 0; i < count; ++i) {
        long long value = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return nullptr;
        }
        values.push_back(value);
    }
    Py_DECREF(seq);
    long long total = 0;
    std::string failure;
    // The exception is caught before the GIL is taken back, so it never skips the re-acquire.
    Py_BEGIN_ALLOW_THREADS
    try {
        total = sum_in_threads(values);
    } catch (const std::system_error &error) {
        failure = error.what();
    }
    Py_END_ALLOW_THREADS
    if (!failure.empty()) {
        PyErr_SetString(PyExc_OSError, failure.c_str());
        return nullptr;
    }
    return PyLong_FromLongLong(total);
}

static PyObject *format_point(PyObject *, PyObject *args)
{
    double x;
    double y;
    int precision = 2;
    if (!PyArg_ParseTuple(args, "dd|i:format_point", &x, &y, &precision)) {
        return nullptr;
    }
    try {
        const std::string text = format_point_text(x, y, precision);
        return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
    } catch (const std::exception &error) {
        PyErr_SetString(PyExc_ValueError, error.what());
        return nullptr;
    }
}

static PyMethodDef ext_methods[] = {
    {"parse_int", parse_int, METH_VARARGS,
     "Parse a decimal integer; raise ValueError (from a C++ exception) otherwise."},
    {"parallel_sum", parallel_sum, METH_VARARGS, "Sum a sequence of ints using two std::threads."},
    {"format_point", format_point, METH_VARARGS,
     "Format (x, y) with a fixed precision through std::ostringstream."},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef ext_module = {
    PyModuleDef_HEAD_INIT, "_ext", "C++ helpers for mlb_example_cpp.", -1, ext_methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__ext(void)
{
    return PyModule_Create(&ext_module);
}
