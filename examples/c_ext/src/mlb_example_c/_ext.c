/* Small functions that touch threads, the dynamic loader, fcntl, stat and libm,
 * so the built module binds to real glibc symbol versions. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct add_job {
    long long a;
    long long b;
    long long sum;
};

static void *add_worker(void *arg)
{
    struct add_job *job = (struct add_job *)arg;
    job->sum = job->a + job->b;
    return NULL;
}

static PyObject *add_in_thread(PyObject *self, PyObject *args)
{
    struct add_job job = {0, 0, 0};
    pthread_t thread;
    int rc;

    (void)self;
    if (!PyArg_ParseTuple(args, "LL:add_in_thread", &job.a, &job.b)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&thread, NULL, add_worker, &job);
    if (rc == 0) {
        rc = pthread_join(thread, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong(job.sum);
}

static PyObject *file_size(PyObject *self, PyObject *args)
{
    PyObject *arg;
    PyObject *path_obj = NULL;
    const char *path;
    struct stat by_path;
    struct stat by_fd;
    int fd;
    int flags;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTuple(args, "O:file_size", &arg)
        || !PyUnicode_FSConverter(arg, &path_obj)) {
        return NULL;
    }
    path = PyBytes_AS_STRING(path_obj);
    if (stat(path, &by_path) != 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        goto done;
    }
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        goto done;
    }
    /* fcntl and fstat on the open descriptor must agree with stat on the path. */
    flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0 || fstat(fd, &by_fd) != 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        close(fd);
        goto done;
    }
    close(fd);
    if (by_fd.st_size != by_path.st_size) {
        PyErr_SetString(PyExc_RuntimeError, "file changed size while reading it");
        goto done;
    }
    result = PyLong_FromLongLong((long long)by_path.st_size);
done:
    Py_DECREF(path_obj);
    return result;
}

static PyObject *cube_root(PyObject *self, PyObject *args)
{
    double x;

    (void)self;
    if (!PyArg_ParseTuple(args, "d:cube_root", &x)) {
        return NULL;
    }
    return PyFloat_FromDouble(cbrt(x));
}

static PyObject *has_symbol(PyObject *self, PyObject *args)
{
    const char *name;
    void *handle;
    void *address;

    (void)self;
    if (!PyArg_ParseTuple(args, "s:has_symbol", &name)) {
        return NULL;
    }
    handle = dlopen(NULL, RTLD_LAZY);
    if (handle == NULL) {
        PyErr_SetString(PyExc_OSError, dlerror());
        return NULL;
    }
    address = dlsym(handle, name);
    dlclose(handle);
    return PyBool_FromLong(address != NULL);
}

static PyMethodDef ext_methods[] = {
    {"add_in_thread", add_in_thread, METH_VARARGS, "Return a + b, computed in a POSIX thread."},
    {"file_size", file_size, METH_VARARGS, "Return the size in bytes of the file at path."},
    {"cube_root", cube_root, METH_VARARGS, "Return the real cube root of x (libm cbrt)."},
    {"has_symbol", has_symbol, METH_VARARGS,
     "Return whether the running process exports the named symbol (dlopen/dlsym)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ext_module = {
    PyModuleDef_HEAD_INIT, "_ext", "C helpers for mlb_example_c.", -1, ext_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ext(void)
{
    return PyModule_Create(&ext_module);
}
