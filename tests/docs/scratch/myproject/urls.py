from docs_urls import urlpatterns  # noqa: F401
