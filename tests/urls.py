from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse(b"Hello, world")


urlpatterns = [path("hello/", hello)]
