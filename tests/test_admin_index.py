"""The admin's front page: where staff find the two ways to try the product."""

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_admin_index_links_both_simulators_and_the_export(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("procedures:simulator") in page
    assert reverse("messaging:resident-simulator") in page
    assert reverse("procedures:application_export") in page
