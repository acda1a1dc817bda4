"""Views for tests/compat/test_handler*.py: Django views run by ViewConsumer."""

import os

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from chanlite.exceptions import ResponseLater


def hello(request):
    return HttpResponse(b"Hello, world")


@csrf_exempt
def echo(request):
    """What the view saw: method, path parts, query, form, files, body size, pid."""
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "script_name": request.META["SCRIPT_NAME"],
        "get": request.GET.dict(),
        "post": request.POST.dict(),
        "files": {name: f.read().decode() for name, f in request.FILES.items()},
        "body_length": len(request.body) if not request.FILES else None,
        "cookies": request.COOKIES,
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "user_agent": request.META.get("HTTP_USER_AGENT"),
        "scheme": request.scheme,
        "pid": os.getpid(),
    })


def stream(request):
    count = int(request.GET.get("n", "3"))
    return StreamingHttpResponse(f"line {i}\n" for i in range(count))


def stream_fail(request):
    def lines():
        yield b"first\n"
        raise RuntimeError("the stream fails on purpose")

    return StreamingHttpResponse(lines())


def big(request):
    return HttpResponse(b"x" * int(request.GET.get("size", "100000")))


def later(request):
    raise ResponseLater()


def broken(request):
    raise RuntimeError("this view fails on purpose")


def set_cookie(request):
    response = HttpResponse("cookie set")
    response.set_cookie("flavour", "oat")
    return response


urlpatterns = [
    path("hello/", hello),
    path("echo/", echo),
    path("stream/", stream),
    path("big/", big),
    path("stream-fail/", stream_fail),
    path("later/", later),
    path("broken/", broken),
    path("cookie/", set_cookie),
]
