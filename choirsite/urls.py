"""The site: Choir's URLs as any host project mounts them, plus accounts and admin."""

from django.contrib import admin
from django.urls import include, path

from choir import views
from choir.throttle import signups_limited

urlpatterns = [
    path("", include("choir.urls")),
    path("accounts/signup/", signups_limited(views.signup), name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
