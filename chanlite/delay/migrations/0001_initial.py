from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="StoredDelay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("due", models.FloatField(db_index=True)),
                ("channel", models.CharField(max_length=100)),
                ("content", models.BinaryField()),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["due", "id"], "verbose_name": "delayed message"},
        ),
    ]
